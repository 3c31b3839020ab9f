"""Projects and their files: the history view and download URLs (ownership: services.ownership)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from reframe.config import Settings
from reframe.db.models import Account, File, FileRole, FileStatus, Project, Share
from reframe.errors import Gone, NotFound
from reframe.services.pagination import PageSlice, Window, fetch_page
from reframe.storage.base import Storage


def list_projects(session: Session, account: Account, window: Window) -> PageSlice[Project]:
    """Newest first, with files and jobs loaded for the history view."""
    return fetch_page(
        session,
        select(Project)
        .where(Project.account_id == account.id, Project.deleted_at.is_(None))
        .options(selectinload(Project.files), selectinload(Project.jobs))
        .order_by(Project.created_at.desc(), Project.id.desc()),
        window,
    )


def file_url(
    storage: Storage,
    settings: Settings,
    file: File,
    *,
    inline: bool = False,
    ttl_sec: int | None = None,
    share: Share | None = None,
) -> str:
    """The one way a URL to a file's bytes is made: served as the file's verified type.

    A download (attachment named after the file) unless `inline` (a player's source);
    `share` binds the URL to that share link (reframe.services.shares.file_url).
    """
    return storage.presign_download(
        file.object_key,
        settings.download_url_ttl_sec if ttl_sec is None else ttl_sec,
        filename=file.filename,
        content_type=file.content_type,
        inline=inline,
        bound_to=None if share is None else share.id,
    )


def download_url(storage: Storage, settings: Settings, file: File) -> str:
    """A fresh short-lived URL; the object must still exist in storage.

    An output is downloadable only once ready, which it becomes with its job's `done`: one
    being stored, or refused because its job ended otherwise, is not there to download.
    """
    if file.status is FileStatus.EXPIRED:
        raise Gone(file.error or f"file {file.id} expired and its stored bytes were deleted")
    if file.role is FileRole.OUTPUT and file.status is not FileStatus.READY:
        raise NotFound(
            f"file {file.id} is not available: its render was not delivered ({file.status.value})"
        )
    if storage.head(file.object_key) is None:
        raise NotFound(
            f"file {file.id} has no stored bytes (never uploaded, or deleted after being rejected)"
        )
    return file_url(storage, settings, file)
