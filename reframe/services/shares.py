"""Public review links: an unguessable token that reads one project, nothing else."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import Account, File, Project, Share
from reframe.errors import NotFound
from reframe.services import ownership, projects
from reframe.storage.base import Storage

# 24 random bytes = 192 bits, comfortably above the 128-bit floor for bearer links.
TOKEN_BYTES = 24
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def active_share(session: Session, project_id: str) -> Share | None:
    return session.scalar(
        select(Share).where(Share.project_id == project_id, Share.revoked_at.is_(None)).limit(1)
    )


def create(session: Session, account: Account, project_id: str) -> Share:
    """The project's live share link; an existing one is returned rather than multiplied."""
    project = ownership.owned_project(session, account, project_id)
    existing = active_share(session, project.id)
    if existing is not None:
        return existing
    share = Share(project_id=project.id, token=secrets.token_urlsafe(TOKEN_BYTES))
    session.add(share)
    session.flush()
    return share


def revoke(session: Session, account: Account, project_id: str) -> int:
    """Revoke every live link of the project; returns how many there were."""
    project = ownership.owned_project(session, account, project_id)
    now = utcnow()
    shares = session.scalars(
        select(Share).where(Share.project_id == project.id, Share.revoked_at.is_(None))
    ).all()
    for share in shares:
        share.revoked_at = now
    if not shares:
        raise NotFound(f"project {project_id} has no active share link")
    return len(shares)


def live_share(session: Session, token: str) -> Share:
    """The share behind `token`; NotFound (404) for unknown or revoked tokens."""
    # Tokens are url-safe base64 (secrets.token_urlsafe); anything else is not looked up
    # (PostgreSQL cannot compare a string holding NUL).
    well_formed = _TOKEN.fullmatch(token) is not None
    share = session.scalar(select(Share).where(Share.token == token)) if well_formed else None
    if share is None or share.revoked_at is not None:
        raise NotFound("share link not found or revoked")
    if share.project.deleted_at is not None:
        # Made in the instant its project was being deleted (deletion removes the others).
        raise NotFound("share link not found: its project was deleted")
    return share


def shared_project(session: Session, token: str) -> Project:
    return live_share(session, token).project


def is_live(session: Session, share_id: str) -> bool:
    """Whether the share `share_id` still stands: URLs minted for it check this on each use."""
    row = session.execute(select(Share.revoked_at).where(Share.id == share_id)).first()
    return row is not None and row.revoked_at is None


def file_url(
    storage: Storage, settings: Settings, share: Share, file: File, *, inline: bool = False
) -> str:
    """A URL to `file` for whoever holds `share`: dead once the share is revoked.

    The local backend re-checks the share on every request; S3 cannot, so the URL also lives
    only REFRAME_SHARE_URL_TTL_SEC (minutes, where an owner's own links live an hour).
    """
    return projects.file_url(
        storage, settings, file, inline=inline, ttl_sec=settings.share_url_ttl_sec, share=share
    )
