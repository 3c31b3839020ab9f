"""Public review links: an unguessable token that reads one project, nothing else."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from reframe.db.base import utcnow
from reframe.db.models import Account, Project, Share
from reframe.errors import NotFound
from reframe.services import ownership

# 24 random bytes = 192 bits, comfortably above the 128-bit floor for bearer links.
TOKEN_BYTES = 24


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


def shared_project(session: Session, token: str) -> Project:
    share = session.scalar(select(Share).where(Share.token == token))
    if share is None or share.revoked_at is not None:
        raise NotFound("share link not found or revoked")
    return share.project
