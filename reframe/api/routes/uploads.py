"""Direct uploads to storage."""

from __future__ import annotations

from fastapi import APIRouter

from reframe.api.deps import CurrentAccount, SessionDep, SettingsDep, StorageDep
from reframe.api.errors import error_responses
from reframe.api.schemas import PresignIn, PresignOut
from reframe.services import uploads

router = APIRouter(prefix="/upload", tags=["uploads"])


@router.post(
    "/presign",
    response_model=PresignOut,
    summary="Create a direct upload URL for your video file",
    responses=error_responses(400, 401, 413, 429, 500),
)
def presign_upload(
    body: PresignIn,
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> PresignOut:
    signed = uploads.presign(
        session,
        storage,
        settings,
        account,
        filename=body.filename,
        content_type=body.content_type,
        size_bytes=body.size_bytes,
    )
    session.commit()
    return PresignOut(
        upload_url=signed.upload_url,
        key=signed.file.storage_key,
        project_id=signed.project.id,
        expires_at=signed.expires_at,
        method=signed.method,
        headers=signed.headers,
    )
