"""The one writer of a job's status, lease and progress fields after acceptance.

Each operation is one short transaction: lock the job, check, change, commit, then ring the
event bus. Used by the dispatcher (claim, unclaim, heartbeat, adopt, retry, release), by the
render driver (progress, done, failed) and by the API (cancel). Every method that changes status
is safe to call twice: a job that already moved on is left alone and the call reports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.base import utcnow
from reframe.db.models import File, FileRole, FileStatus, Job, JobStatus
from reframe.errors import Conflict, Forbidden
from reframe.jobs import refunds
from reframe.jobs.events import EventBus
from reframe.jobs.launchers import submission_id_for
from reframe.jobs.progress import LiveProgress, ProgressStore, ProgressTracker
from reframe.logs import job_fields
from reframe.services import audit, transitions
from reframe.services.transitions import StatusEvent

log = logging.getLogger(__name__)

# Error text is shown to customers; keep it to one readable paragraph.
MAX_ERROR_CHARS = 2000

RUNNING = (JobStatus.COLD_START, JobStatus.PROCESSING)
WAITING = (JobStatus.QUEUED, JobStatus.NO_WORKERS)


@dataclass(frozen=True)
class Claim:
    """A job taken by a dispatcher: it now holds the lease for this attempt."""

    job_id: str
    attempt: int
    running: int  # renders that were running when this one was claimed


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
        db_progress_interval_sec: float = 1.0,
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
        log.info(
            "job failed: %s; %d xeconds refunded",
            error[:200],
            refunded,
            extra=job_fields(job_id, job.attempts),
        )
        self._forget(job_id)
        self._publish([event])
        return Settled(JobStatus.FAILED, refunded, True)

    def complete(self, job_id: str, output_file_id: str, *, attempt: int | None = None) -> bool:
        """`done` with its output, which becomes ready in this same transaction.

        Refused (False) when the job already ended (cancelled and refunded, failed by the
        operator) or the attempt is stale: the output is then marked rejected, so it is never
        listed as ready, downloaded or shared; the caller deletes its bytes.
        """
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            output = session.get(File, output_file_id)
            if output is not None and (
                output.role is not FileRole.OUTPUT or output.project_id != job.project_id
            ):
                output = None  # not this job's render; never promoted or rejected here
            if job.status.is_terminal or self._stale(job, attempt):
                if output is not None and output.status is FileStatus.PENDING:
                    output.status = FileStatus.REJECTED
                    output.error = (
                        f"Not delivered: the job was already {job.status.value} when this "
                        "render finished."
                        if job.status.is_terminal
                        else "Not delivered: a newer attempt of the job replaced this one."
                    )
                    session.commit()
                else:
                    session.rollback()
                return False
            if output is not None and output.status is FileStatus.PENDING:
                output.status = FileStatus.READY
            job.output_file_id = output_file_id
            event = transitions.record(session, job, JobStatus.DONE)
            session.commit()
        log.info("job done: output file %s", output_file_id, extra=job_fields(job_id, attempt))
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
        log.info(
            "job cancelled by its owner; %d xeconds refunded",
            refunded,
            extra=job_fields(job_id, job.attempts),
        )
        self._forget(job_id)
        self._publish([event])
        return job, Settled(JobStatus.CANCELLED, refunded, True)

    # -- operator actions (reframe jobs fail / refund), audited ------------------------------

    def operator_fail(self, job_id: str, reason: str, *, operator: str) -> Settled:
        """Fail a job that has not ended, with the usual full refund (`reframe jobs fail`).

        Safe to run twice: a job that already failed is left alone (`changed` False). A job
        that ended otherwise is a Conflict: done or cancelled stays what it is; give credit
        back with `operator_refund` instead. A running render is stopped by its dispatcher,
        which sees the job failed; its driver can no longer change the job.
        """
        reason = audit.check_reason(reason)
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if job.status is JobStatus.FAILED:
                session.rollback()
                return Settled(JobStatus.FAILED, 0, False)
            if job.status.is_terminal:
                raise Conflict(
                    f"job {job_id} is already {job.status.value}, so it cannot fail; use "
                    "`reframe jobs refund` to give its xeconds back"
                )
            previous = job.status
            job.error = (
                f"The operator of this service stopped this render: {reason} "
                "Your xeconds were refunded."
            )[:MAX_ERROR_CHARS]
            refunded = refunds.refund(
                session, job, job.charged_xeconds, note=f"failed by the operator: {reason}"[:500]
            )
            event = transitions.record(
                session, job, JobStatus.FAILED, message=f"failed by the operator: {reason}"
            )
            audit.record(
                session,
                operator=operator,
                action="job.fail",
                reason=reason,
                account_id=job.account_id,
                job_id=job.id,
                detail={"previous_status": previous.value, "refunded_xeconds": refunded},
            )
            attempt = job.attempts
            session.commit()
        log.warning(
            "job failed by operator %s: %s; %d xeconds refunded",
            operator,
            reason,
            refunded,
            extra=job_fields(job_id, attempt),
        )
        self._forget(job_id)
        self._publish([event])
        return Settled(JobStatus.FAILED, refunded, True)

    def operator_refund(self, job_id: str, reason: str, *, operator: str) -> int:
        """Give back what is left of an ended job's charge (`reframe jobs refund`); returns the
        xeconds refunded, 0 when nothing was left (so running it twice changes nothing)."""
        reason = audit.check_reason(reason)
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if not job.status.is_terminal:
                raise Conflict(
                    f"job {job_id} is still {job.status.value}; fail it with `reframe jobs "
                    "fail` (which refunds it in full) or wait until it ends"
                )
            note = f"refunded by the operator: {reason}"[:500]
            amount = refunds.refund_rest(session, job, note)
            if amount == 0:
                session.rollback()
                return 0
            transitions.note(session, job, f"{amount} xeconds refunded by the operator: {reason}")
            audit.record(
                session,
                operator=operator,
                action="job.refund",
                reason=reason,
                account_id=job.account_id,
                job_id=job.id,
                detail={"status": job.status.value, "refunded_xeconds": amount},
            )
            attempt = job.attempts
            session.commit()
        log.warning(
            "job refunded by operator %s: %s; %d xeconds",
            operator,
            reason,
            amount,
            extra=job_fields(job_id, attempt),
        )
        return amount

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

    # -- dispatch: claims, leases, retries --------------------------------------------------

    def running_count(self) -> int:
        with self.sessions() as session:
            return int(
                session.scalar(select(func.count()).select_from(Job).where(Job.status.in_(RUNNING)))
                or 0
            )

    def claim_next(
        self,
        owner: str,
        lease: timedelta,
        capacity: int,
        *,
        describe: Callable[[int], str] | None = None,
    ) -> Claim | None:
        """Take the oldest waiting job for `owner` (attempt + 1, `cold_start`), unless
        `capacity` renders already run; then every queued job is shown as `no_workers`.

        `describe(running)` says what the render will ask for, for the job's `cold_start`
        event, given how many renders run beside it.
        """
        with self.sessions() as session:
            running = int(
                session.scalar(select(func.count()).select_from(Job).where(Job.status.in_(RUNNING)))
                or 0
            )
            if running >= capacity:
                waiting = session.scalars(
                    select(Job)
                    .where(Job.status == JobStatus.QUEUED)
                    .with_for_update(skip_locked=True)
                ).all()
                events = [
                    transitions.record(session, job, JobStatus.NO_WORKERS, message="capacity full")
                    for job in waiting
                ]
                session.commit()
                self._publish(events)
                return None
            job = session.scalars(
                select(Job)
                .where(Job.status.in_(WAITING))
                .order_by(Job.created_at, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                session.rollback()
                return None
            job.attempts += 1
            attempt = job.attempts
            job.lease_owner = owner
            job.lease_expires_at = utcnow() + lease
            job.ray_submission_id = submission_id_for(job.id, attempt)
            job.error = None
            message = f"attempt {attempt} starting"
            if describe is not None:
                message += f": {describe(running)}"
            event = transitions.record(session, job, JobStatus.COLD_START, message=message)
            claim = Claim(job.id, attempt, running)
            session.commit()
        log.info("attempt claimed by %s", owner, extra=job_fields(claim.job_id, attempt))
        self._publish([event])
        return claim

    def unclaim(self, job_id: str, attempt: int, reason: str) -> bool:
        """Give a claim back as `no_workers` (the cluster could not take the render after all);
        the attempt does not count."""
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if job.status is not JobStatus.COLD_START or job.attempts != attempt:
                session.rollback()
                return False
            job.attempts -= 1
            self._clear_lease(job)
            event = transitions.record(session, job, JobStatus.NO_WORKERS, message=reason[:500])
            session.commit()
        self._publish([event])
        return True

    def renew_leases(self, owner: str, lease: timedelta) -> None:
        """Heartbeat: extend every lease `owner` holds on a running job."""
        with self.sessions() as session:
            session.execute(
                update(Job)
                .where(Job.lease_owner == owner, Job.status.in_(RUNNING))
                .values(lease_expires_at=utcnow() + lease)
            )
            session.commit()

    def release_leases(self, owner: str) -> None:
        """Let `owner`'s leases lapse now, so a successor adopts its renders at once."""
        with self.sessions() as session:
            session.execute(
                update(Job)
                .where(Job.lease_owner == owner, Job.status.in_(RUNNING))
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
            session.commit()

    def adopt(self, job_id: str, attempt: int, owner: str, lease: timedelta) -> bool:
        """Take over a running attempt whose lease lapsed (its dispatcher died) while its render
        lives on. False when the job moved on or someone else renewed or adopted it first."""
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            lapsed = job.lease_expires_at is None or job.lease_expires_at < utcnow()
            if job.status not in RUNNING or job.attempts != attempt or not lapsed:
                session.rollback()
                return False
            job.lease_owner = owner
            job.lease_expires_at = utcnow() + lease
            session.commit()
        return True

    def retry_or_fail(self, job_id: str, attempt: int, reason: str, max_attempts: int) -> bool:
        """An attempt was lost (its driver or node died, it could not start): queue the job
        again while attempts remain, else fail and refund it. False if the job moved on."""
        with self.sessions() as session:
            job = transitions.lock_job(session, job_id)
            if job.status.is_terminal or job.attempts != attempt:
                session.rollback()
                return False
            if job.attempts < max_attempts:
                self._clear_lease(job)
                job.progress = 0.0
                job.frames_done = None
                job.eta_sec = None
                event = transitions.record(
                    session,
                    job,
                    JobStatus.QUEUED,
                    message=f"attempt {attempt} lost: {reason}; retrying",
                )
                session.commit()
                log.warning(
                    "job %s attempt %d lost (%s); queued again",
                    job_id,
                    attempt,
                    reason,
                    extra=job_fields(job_id, attempt),
                )
                self._publish([event])
                self._forget(job_id)
                return True
        # The reason (exit codes, the driver's last log line) is for operators: it can name
        # server paths and exception types, so the customer gets a plain sentence instead.
        log.error(
            "job %s failed for good after attempt %d: %s",
            job_id,
            attempt,
            reason,
            extra=job_fields(job_id, attempt),
        )
        self.fail(
            job_id,
            f"The render stopped unexpectedly ({attempt} attempt(s)). Your xeconds were "
            "refunded; retrying the job may succeed.",
            attempt=attempt,
        )
        return True

    @staticmethod
    def _clear_lease(job: Job) -> None:
        job.lease_owner = None
        job.lease_expires_at = None
        job.ray_submission_id = None

    def _forget(self, job_id: str) -> None:
        self._last_db_write.pop(job_id, None)
        if self.progress is not None:
            self.progress.clear(job_id)
