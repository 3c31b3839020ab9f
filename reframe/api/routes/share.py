"""Public, read-only view of a shared project: no key, no account data."""

from __future__ import annotations

from fastapi import APIRouter

from reframe.api.deps import SessionDep, SettingsDep, StorageDep
from reframe.api.errors import error_responses
from reframe.api.presenters import shared_file
from reframe.api.schemas import SharedProjectOut
from reframe.db.models import FileStatus
from reframe.services import shares

router = APIRouter(prefix="/share", tags=["share"])


@router.get(
    "/{token}",
    response_model=SharedProjectOut,
    summary="Read a shared project without an API key",
    responses=error_responses(404, 500),
)
def read_share(
    token: str, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> SharedProjectOut:
    share = shares.live_share(session, token)
    project = share.project
    files = []
    for f in project.files:
        # Only verified inputs and finished outputs: pending or rejected uploads hold no video.
        if f.status is not FileStatus.READY:
            continue
        files.append(shared_file(f, shares.file_url(storage, settings, share, f)))
    return SharedProjectOut(name=project.name, created_at=project.created_at, files=files)
