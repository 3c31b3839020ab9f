"""Project history, downloads, and share links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response

from reframe.api.deps import (
    CurrentAccount,
    LifecycleDep,
    PageDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from reframe.api.errors import error_responses
from reframe.api.presenters import project_out
from reframe.api.schemas import DownloadOut, Page, ProjectOut, ShareOut
from reframe.config import Settings
from reframe.db.models import Project, Share
from reframe.services import deletion, ownership, projects, shares
from reframe.services.sweep import file_expires_at

router = APIRouter(prefix="/projects", tags=["projects"])


def share_url(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/share/{token}"


def share_page_url(settings: Settings, token: str) -> str:
    # The studio's review page (reframe/web): what a person opens, unlike the JSON `share_url`.
    return f"{settings.public_base_url.rstrip('/')}/s/{token}"


def _project_out(settings: Settings, project: Project, live: Share | None) -> ProjectOut:
    if live is None:
        return project_out(project, settings, None)
    return project_out(
        project, settings, share_url(settings, live.token), share_page_url(settings, live.token)
    )


@router.get(
    "",
    response_model=Page[ProjectOut],
    summary="List project history with inputs, outputs, and jobs",
    responses=error_responses(400, 401, 500),
)
def list_projects(
    account: CurrentAccount,
    session: SessionDep,
    settings: SettingsDep,
    window: PageDep,
) -> Page[ProjectOut]:
    page = projects.list_projects(session, account, window)
    items = [_project_out(settings, p, shares.active_share(session, p.id)) for p in page.rows]
    return Page[ProjectOut].of(page, items)


@router.get(
    "/{project_id}",
    response_model=ProjectOut,
    summary="Read one project with its inputs, outputs, and jobs",
    responses=error_responses(401, 403, 404, 500),
)
def read_project(
    project_id: str, account: CurrentAccount, session: SessionDep, settings: SettingsDep
) -> ProjectOut:
    project = ownership.owned_project(session, account, project_id)
    live = shares.active_share(session, project.id)
    return _project_out(settings, project, live)


@router.get(
    "/{project_id}/files/{file_id}/download",
    response_model=DownloadOut,
    summary="Create a fresh download URL for an input or output",
    responses=error_responses(401, 403, 404, 410, 500),
)
def download_file(
    project_id: str,
    file_id: str,
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> DownloadOut:
    file = ownership.owned_file(session, account, project_id, file_id)
    url = projects.download_url(storage, settings, file)
    return DownloadOut(
        file_id=file.id,
        url=url,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.download_url_ttl_sec),
        filename=file.filename,
        file_expires_at=file_expires_at(file, settings),
    )


@router.post(
    "/{project_id}/share",
    response_model=ShareOut,
    summary="Create a public review link for a project",
    responses=error_responses(401, 403, 404, 500),
)
def create_share(
    project_id: str, account: CurrentAccount, session: SessionDep, settings: SettingsDep
) -> ShareOut:
    share = shares.create(session, account, project_id)
    session.commit()
    return ShareOut(
        token=share.token,
        url=share_url(settings, share.token),
        page_url=share_page_url(settings, share.token),
        project_id=share.project_id,
        created_at=share.created_at,
    )


@router.delete(
    "/{project_id}/share",
    status_code=204,
    response_class=Response,
    summary="Revoke the project's public review link",
    responses=error_responses(401, 403, 404, 500),
)
def revoke_share(project_id: str, account: CurrentAccount, session: SessionDep) -> Response:
    shares.revoke(session, account, project_id)
    session.commit()
    return Response(status_code=204)


@router.delete(
    "/{project_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a project with its inputs, outputs, share links and stored bytes",
    description=(
        "Cancels the project's queued or running renders first, each with the usual refund "
        "(see POST /jobs/{id}/cancel), then deletes its share links and the stored bytes of "
        "every input and output. Afterwards the project, its files, their download URLs and "
        "its share links answer 404; its jobs stay listed in GET /jobs (cancelled or as they "
        "ended) and its charges and refunds in GET /me/ledger. Deleting it again is 404."
    ),
    responses=error_responses(401, 403, 404, 500),
)
def delete_project(
    project_id: str,
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    lifecycle: LifecycleDep,
) -> Response:
    deletion.delete_project(session, storage, settings, lifecycle, account, project_id)
    return Response(status_code=204)
