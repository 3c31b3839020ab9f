"""Job lifecycle operations, each one short transaction: lock the job, check, change, commit,
then ring the event bus.

Used by the dispatcher (claims, retries, reaping), by the render driver (cold start, progress,
done, failed) and by the API (cancel, live status). Every method that changes status is safe to
call twice: a job that already moved on is left alone and the call reports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from reframe.db.base import utcnow
from reframe.db.models import Job, JobStatus
from reframe.errors import Conflict, Forbidden
from reframe.jobs import refunds, transitions
from reframe.jobs.events import EventBus, StatusEvent
from reframe.jobs.progress import LiveProgress, ProgressStore, ProgressTracker

# Error text is shown to customers; keep it to one readable paragraph.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Settled:
    """Outcome of a terminal change: the status reached and what was refunded by it."""

    status: JobStatus
    refunded: int
    changed: bool  # False when the job had already reached an end state


class JobLifecycle:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        bus: EventBus | None = None,
        progress: ProgressStore | None = None,
        db_progress_interval_sec: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.progress = progress
        self._db_interval = db_progress_interval_sec
        self._clock = clock
        self._last_db_write: dict[str, float] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def _publish(self, events: list[StatusEvent]) -> None:
        if self.bus is None:
            return
        for event in events:
            try:
                self.bus.publish(event)
            except Exception:  # noqa: S112 - a doorbell; the committed row is the record
                continue

    def _stale(self, job: Job, attempt: int | None) -> bool:
        # A driver from an earlier attempt must not steer the current one.
        return attempt is not None and attempt != job.attempts

    # -- status changes ---------------------------------------------------------------------

    def advance(
        self, job_id: str, to: JobStatus, *, attempt: int | None = None, message: str | None = None
    ) -> bool:
        """Move a non-terminal job to `to` if the state machine allows it now."""
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if (
                self._stale(job, attempt)
                or job.status is to
                or not transitions.can_move(job.status, to)
            ):
                session.rollback()
                return False
            event = transitions.record(session, job, to, message=message)
            session.commit()
        self._publish([event])
        return True

    def fail(
        self,
        job_id: str,
        error: str,
        *,
        attempt: int | None = None,
        only_from: Collection[JobStatus] | None = None,
    ) -> Settled:
        """`failed` with a readable error and a refund of everything not yet refunded.

        `only_from`: leave the job alone unless, under its lock, it is still in one of these.
        """
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            moved_on = only_from is not None and job.status not in only_from
            if job.status.is_terminal or self._stale(job, attempt) or moved_on:
                session.rollback()
                return Settled(job.status, 0, False)
            job.error = error[:MAX_ERROR_CHARS]
            refunded = refunds.refund(
                session, job, job.charged_xeconds, note=f"render failed: {error[:200]}"
            )
            event = transitions.record(session, job, JobStatus.FAILED, message=job.error)
            session.commit()
        self._forget(job_id)
        self._publish([event])
        return Settled(JobStatus.FAILED, refunded, True)

    def complete(self, job_id: str, output_file_id: str, *, attempt: int | None = None) -> bool:
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if job.status.is_terminal or self._stale(job, attempt):
                session.rollback()
                return False
            job.output_file_id = output_file_id
            event = transitions.record(session, job, JobStatus.DONE)
            session.commit()
        self._forget(job_id)
        self._publish([event])
        return True

    def cancel(self, job_id: str, account_id: str) -> tuple[Job, Settled]:
        """The owner's cancel: full refund before frames flow, the unrendered share after."""
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if job.account_id != account_id:
                raise Forbidden(f"job {job_id} belongs to another account")
            if job.status.is_terminal:
                raise Conflict(
                    f"job {job_id} is already {job.status.value}; only queued or running jobs "
                    "can be cancelled"
                )
            live = self.progress.get(job_id) if self.progress else None
            if live is not None and live.attempt == job.attempts:
                # The progress store may be ahead of the throttled row; bill what was rendered.
                job.frames_done = max(job.frames_done or 0, live.frames_done)
                job.frames_total = job.frames_total or live.frames_total
            amount = refunds.unrendered_share(job)
            refunded = refunds.refund(session, job, amount, note="cancelled by the owner")
            event = transitions.record(session, job, JobStatus.CANCELLED, message="cancelled")
            session.commit()
            session.expunge(job)
        self._forget(job_id)
        self._publish([event])
        return job, Settled(JobStatus.CANCELLED, refunded, True)

    # -- progress ---------------------------------------------------------------------------

    def tracker(self, job_id: str, attempt: int) -> Callable[..., None]:
        """The pipeline's per-chunk callback for one attempt.

        Called as `(frames_done, frames_total)` or with the pipeline's extra
        `(chunks_done, chunks_total)`, which are not needed here.
        """
        live_tracker = ProgressTracker(self.progress, job_id, attempt) if self.progress else None

        def report(frames_done: int, frames_total: int, *_chunks: int) -> None:
            live = live_tracker.report(frames_done, frames_total) if live_tracker else None
            self.record_progress(job_id, attempt, frames_done, frames_total, live)

        return report

    def record_progress(
        self,
        job_id: str,
        attempt: int,
        frames_done: int,
        frames_total: int,
        live: LiveProgress | None = None,
    ) -> None:
        """Write progress to the row (throttled) and move cold_start -> processing once."""
        now = self._clock()
        last = self._last_db_write.get(job_id)
        finished = frames_total > 0 and frames_done >= frames_total
        if last is not None and now - last < self._db_interval and not finished:
            return
        self._last_db_write[job_id] = now
        events: list[StatusEvent] = []
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if job.status.is_terminal or self._stale(job, attempt):
                session.rollback()
                return
            job.frames_total = frames_total
            job.frames_done = min(frames_done, frames_total)
            job.progress = frames_done / frames_total if frames_total else 0.0
            job.eta_sec = live.eta_sec if live else None
            job.updated_at = utcnow()
            if job.status is JobStatus.COLD_START:
                events.append(transitions.record(session, job, JobStatus.PROCESSING))
            session.commit()
        self._publish(events)

    def _forget(self, job_id: str) -> None:
        self._last_db_write.pop(job_id, None)
        if self.progress is not None:
            self.progress.clear(job_id)


def overlay_live(job: Job, live: LiveProgress | None) -> tuple[float, int | None, float | None]:
    """(progress, frames_done, eta_sec) for GET /jobs/{id}: the live store when it is newer."""
    if (
        live is None
        or job.status is not JobStatus.PROCESSING
        or live.attempt != job.attempts
        or (job.frames_done is not None and live.frames_done < job.frames_done)
    ):
        return job.progress, job.frames_done, job.eta_sec
    return live.progress, live.frames_done, live.eta_sec


def lease_expiry(now: datetime, lease_sec: float) -> datetime:
    from datetime import timedelta

    return now + timedelta(seconds=lease_sec)
