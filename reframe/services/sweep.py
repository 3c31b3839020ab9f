"""The sweeper: storage nobody will use again is deleted, on the dispatcher's schedule.

- Pending uploads unverified `upload_abandon_after_sec` after their presign (always past their
  URL's lifetime): their bytes, if any arrived, are deleted and the row is marked `expired`, so
  the API answers 410 for its key from then on.
- Files of projects their owner deleted whose bytes could not all be deleted for good at once
  (a failed delete, or an upload URL still usable then): see `sweep_deleted_files`.
- Incomplete uploads in storage itself: the local backend's orphaned `.part` files and S3's
  unfinished multipart uploads, older than the same threshold.

Every dispatcher runs it. Each row is taken by a conditional UPDATE (`status = 'pending'`), so of
two sweepers only one deletes a given file, and a second run finds nothing left to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import File, FileRole, FileStatus, Job, JobStatus, Project
from reframe.services.erasure import DELETED_KEY_PREFIX, delete_file_bytes, purge_file
from reframe.storage.base import Storage

log = logging.getLogger(__name__)

# A job in any of these still needs its input's bytes (the lifecycle's non-terminal states).
_NEEDS_INPUT = [s for s in JobStatus if not s.is_terminal]

RETAINED = (
    "This file was stored more than {days:g} days ago and was deleted under the service's "
    "retention policy (REFRAME_RETENTION_DAYS). Upload the video again to render it."
)

ABANDONED = (
    "This upload was never verified within {hours:g} h of its presign, so it was treated as "
    "abandoned and its bytes were deleted. Presign a new upload."
)


@dataclass
class SweepReport:
    abandoned: list[str] = field(default_factory=list)  # file ids marked expired
    retained: list[str] = field(default_factory=list)  # file ids past retention, deleted
    deleted: list[str] = field(default_factory=list)  # files of deleted projects finished
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


def file_expires_at(file: File, settings: Settings) -> datetime | None:
    """When the sweeper deletes this file's bytes: None once they are gone (or never were)."""
    if file.status is FileStatus.PENDING:
        return file.created_at + timedelta(seconds=settings.upload_abandon_after_sec)
    if file.status is FileStatus.READY:
        return file.created_at + timedelta(days=settings.retention_days)
    return None


def _unused_by_live_jobs() -> ColumnElement[bool]:
    return ~exists().where(Job.input_file_id == File.id, Job.status.in_(_NEEDS_INPUT))


def sweep_retained_files(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    *,
    now: datetime | None = None,
    report: SweepReport | None = None,
) -> SweepReport:
    """Delete verified inputs and outputs older than `retention_days`, except inputs that a
    job still waiting or running needs; the check is in the UPDATE itself, so a job accepted
    after the candidates were listed still keeps its input."""
    report = report or SweepReport()
    cutoff = (now or utcnow()) - timedelta(days=settings.retention_days)
    message = RETAINED.format(days=settings.retention_days)
    with sessions() as session:
        stale = session.execute(
            select(File.id, File.storage_key, File.pinned_key)
            .where(
                File.status == FileStatus.READY,
                File.created_at < cutoff,
                _unused_by_live_jobs(),
            )
            .order_by(File.created_at)
            .limit(settings.sweep_batch)
        ).all()
        for file_id, key, pinned in stale:
            taken = session.execute(
                update(File)
                .where(
                    File.id == file_id,
                    File.status == FileStatus.READY,
                    _unused_by_live_jobs(),
                )
                .values(status=FileStatus.EXPIRED, error=message, error_status=410)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if getattr(taken, "rowcount", 0) != 1:
                continue
            try:
                delete_file_bytes(storage, key, pinned)
            except Exception:
                log.exception("deleting expired file %s failed; retrying next sweep", key)
                _restore(sessions, file_id, FileStatus.READY)
                continue
            report.retained.append(file_id)
    return report


def sweep_deleted_files(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    *,
    now: datetime | None = None,
    report: SweepReport | None = None,
) -> SweepReport:
    """Finish what a customer's deletion could not (reframe.services.deletion): files of
    deleted projects whose keys are still recorded had bytes to delete again, either because a
    delete failed or because their upload URL could still be used then (an S3 URL cannot be
    revoked). Once the URL is past its lifetime, the bytes go and the keys are forgotten."""
    report = report or SweepReport()
    cutoff = (now or utcnow()) - timedelta(seconds=settings.upload_url_ttl_sec)
    with sessions() as session:
        left = session.scalars(
            select(File.id)
            .join(Project, Project.id == File.project_id)
            .where(
                Project.deleted_at.is_not(None),
                File.status == FileStatus.EXPIRED,
                File.created_at < cutoff,
                ~File.storage_key.startswith(DELETED_KEY_PREFIX),
            )
            .order_by(File.created_at)
            .limit(settings.sweep_batch)
        ).all()
    for file_id in left:
        try:
            if purge_file(sessions, storage, settings, file_id, now=now):
                report.deleted.append(file_id)
        except Exception:
            log.exception("deleting the bytes of deleted file %s failed; next sweep", file_id)
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
    sweep_retained_files(sessions, storage, settings, now=now, report=report)
    sweep_deleted_files(sessions, storage, settings, now=now, report=report)
    report.incomplete = storage.sweep_incomplete(
        now - timedelta(seconds=settings.upload_abandon_after_sec)
    )
    if report.abandoned or report.retained or report.deleted or report.incomplete:
        log.info(
            "sweep: %d abandoned uploads and %d files past retention expired, %d files of "
            "deleted projects finished, %d incomplete uploads removed",
            len(report.abandoned),
            len(report.retained),
            len(report.deleted),
            report.incomplete,
        )
    return report
