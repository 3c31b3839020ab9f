"""The sweeper: storage nobody will use again is deleted, on the dispatcher's schedule.

- Pending uploads unverified `upload_abandon_after_sec` after their presign (always past their
  URL's lifetime): their bytes, if any arrived, are deleted and the row is marked `expired`, so
  the API answers 410 for its key from then on.
- Incomplete uploads in storage itself: the local backend's orphaned `.part` files and S3's
  unfinished multipart uploads, older than the same threshold.

Every dispatcher runs it. Each row is taken by a conditional UPDATE (`status = 'pending'`), so of
two sweepers only one deletes a given file, and a second run finds nothing left to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import File, FileRole, FileStatus
from reframe.storage.base import Storage

log = logging.getLogger(__name__)

ABANDONED = (
    "This upload was never verified within {hours:g} h of its presign, so it was treated as "
    "abandoned and its bytes were deleted. Presign a new upload."
)


@dataclass
class SweepReport:
    abandoned: list[str] = field(default_factory=list)  # file ids marked expired
    incomplete: int = 0  # .part files / multipart uploads removed


def _take(session: Session, file_id: str, old: FileStatus, message: str) -> bool:
    """Mark one file expired if it is still `old`; False when another sweeper (or a verify)
    got to it first."""
    result = session.execute(
        update(File)
        .where(File.id == file_id, File.status == old)
        .values(status=FileStatus.EXPIRED, error=message, error_status=410, probe=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def _restore(sessions: sessionmaker[Session], file_id: str, old: FileStatus) -> None:
    # The bytes could not be deleted: give the row back so the next sweep tries again.
    with sessions() as session:
        session.execute(
            update(File)
            .where(File.id == file_id, File.status == FileStatus.EXPIRED)
            .values(status=old, error=None, error_status=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()


def sweep_abandoned_uploads(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    *,
    now: datetime | None = None,
    report: SweepReport | None = None,
) -> SweepReport:
    report = report or SweepReport()
    cutoff = (now or utcnow()) - timedelta(seconds=settings.upload_abandon_after_sec)
    message = ABANDONED.format(hours=settings.upload_abandon_after_sec / 3600)
    with sessions() as session:
        stale = session.execute(
            select(File.id, File.storage_key)
            .where(
                File.role == FileRole.INPUT,
                File.status == FileStatus.PENDING,
                File.created_at < cutoff,
            )
            .order_by(File.created_at)
            .limit(settings.sweep_batch)
        ).all()
        for file_id, key in stale:
            if not _take(session, file_id, FileStatus.PENDING, message):
                continue
            try:
                # On S3 this also removes an object a client PUT but never verified.
                storage.delete(key)
            except Exception:
                log.exception("deleting abandoned upload %s failed; retrying next sweep", key)
                _restore(sessions, file_id, FileStatus.PENDING)
                continue
            report.abandoned.append(file_id)
    return report


def sweep(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> SweepReport:
    """One full sweep (see the module docstring); idempotent."""
    now = now or utcnow()
    report = sweep_abandoned_uploads(sessions, storage, settings, now=now)
    report.incomplete = storage.sweep_incomplete(
        now - timedelta(seconds=settings.upload_abandon_after_sec)
    )
    if report.abandoned or report.incomplete:
        log.info(
            "sweep: %d abandoned uploads expired, %d incomplete uploads removed",
            len(report.abandoned),
            report.incomplete,
        )
    return report
