"""The dispatcher: turns queued jobs into render attempts and makes sure every job ends.

One loop (`Dispatcher.tick`, run by `DispatcherActor` next to the API) does, in order:
1. heartbeat: renew the lease of every job this dispatcher runs;
2. watch: for each of its attempts, ask the launcher what became of it; an attempt that ended
   without the driver settling the job (killed driver or actor, crash) is "lost"; a cancelled
   job's attempt is stopped; an attempt over its time limit is stopped and the job failed;
3. reap: any running job whose lease expired (its dispatcher died) is adopted if its attempt is
   still alive, otherwise lost;
4. claim: while fewer than `capacity` renders run, atomically claim the oldest waiting job
   (lease with owner and expiry, attempt number + 1, `cold_start`) and submit it; waiting jobs
   that do not fit are shown as `no_workers`.
A lost attempt is retried while attempts remain (outputs are keyed by job and attempt, and the
driver of an old attempt can no longer change the job) and otherwise failed and refunded.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.base import utcnow
from reframe.db.models import Job, JobStatus
from reframe.jobs.launchers import LaunchUnavailable, RenderLauncher, submission_id_for
from reframe.jobs.lifecycle import RUNNING, WAITING, JobLifecycle
from reframe.jobs.planning import Placement, RenderPlanner
from reframe.jobs.webhooks import WebhookPool, WebhookSender
from reframe.logs import job_fields
from reframe.options import RenderOptions
from reframe.services import previews

if TYPE_CHECKING:
    from collections.abc import Callable

    from reframe.config import Settings
    from reframe.jobs.events import Subscription
    from reframe.pipeline.cluster import ClusterResources

log = logging.getLogger(__name__)


def time_limit_sec(job: Job, base_sec: float, per_frame_sec: float) -> float:
    """Longest one attempt may take: a fixed allowance plus a budget per output frame."""
    # A preview renders only its first seconds (render_options), so only those are budgeted.
    preview = previews.preview_seconds_of(job.render_options)
    seconds = job.duration_sec if preview is None else min(preview, job.duration_sec)
    frames = job.frames_total or math.ceil(seconds * job.target_fps)
    return base_sec + per_frame_sec * frames


@dataclass
class _Attempt:
    submission_id: str
    attempt: int
    started: float  # monotonic


@dataclass
class TickReport:
    claimed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        launcher: RenderLauncher,
        *,
        capacity: int,
        lifecycle: JobLifecycle | None = None,
        owner: str | None = None,
        lease_sec: float = 30.0,
        heartbeat_sec: float = 5.0,
        max_attempts: int = 2,
        time_base_sec: float = 300.0,
        time_per_frame_sec: float = 2.0,
        max_queue_wait_sec: float = 0.0,
        render_options: RenderOptions | None = None,
        planner: RenderPlanner | None = None,
        on_done: Callable[[str, int], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.sessions = sessions
        self.launcher = launcher
        self.capacity = capacity
        self.lifecycle = lifecycle or JobLifecycle(sessions)
        self.owner = owner or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self.lease = timedelta(seconds=lease_sec)
        # Renew well before expiry: a lease outlives a few missed heartbeats, not one.
        self.heartbeat_sec = min(heartbeat_sec, lease_sec / 3)
        self._last_heartbeat = float("-inf")
        self.max_attempts = max_attempts
        self.time_base_sec = time_base_sec
        self.time_per_frame_sec = time_per_frame_sec
        self.max_queue_wait = timedelta(seconds=max_queue_wait_sec) if max_queue_wait_sec else None
        # Without a planner (no cluster to look at), every render gets the same options and
        # the capacity stays as given.
        self.planner = planner or RenderPlanner(
            render_options or RenderOptions(), fallback_capacity=capacity
        )
        # Told (job id, attempt) when one of this dispatcher's attempts ended `done`: the render
        # metrics (reframe.jobs.metrics.RenderObserver).
        self.on_done = on_done
        self._attempts: dict[str, _Attempt] = {}
        self.submit_backoff_sec = 5.0
        self._submit_retry_at = 0.0

    @classmethod
    def from_settings(
        cls,
        sessions: sessionmaker[Session],
        launcher: RenderLauncher,
        settings: Settings,
        *,
        capacity: int,
        lifecycle: JobLifecycle | None = None,
        resources: Callable[[], ClusterResources] | None = None,
        on_done: Callable[[str, int], None] | None = None,
    ) -> Dispatcher:
        """A dispatcher configured by `settings`; with `resources` it plans every render from
        what the cluster has and can grow to (reframe.jobs.planning), `capacity` otherwise."""
        capacity = settings.max_concurrent_renders or capacity
        planner = RenderPlanner(
            RenderOptions.from_settings(settings),
            gpus_per_actor=settings.render_gpus_per_actor,
            max_actors_per_job=settings.render_max_actors_per_job,
            max_concurrent=settings.max_concurrent_renders,
            resources=resources,
            fallback_capacity=capacity,
        )
        return cls(
            sessions,
            launcher,
            capacity=capacity,
            lifecycle=lifecycle,
            lease_sec=settings.lease_sec,
            heartbeat_sec=settings.heartbeat_sec,
            max_attempts=settings.max_attempts,
            time_base_sec=settings.job_time_base_sec,
            time_per_frame_sec=settings.job_time_per_frame_sec,
            max_queue_wait_sec=settings.max_queue_wait_sec,
            planner=planner,
            on_done=on_done,
        )

    @property
    def running(self) -> dict[str, _Attempt]:
        return dict(self._attempts)

    # -- the loop ---------------------------------------------------------------------------

    def tick(self) -> TickReport:
        report = TickReport()
        self.planner.refresh()
        self.capacity = self.planner.capacity
        self._heartbeat()
        self._watch(report)
        self._reap(report)
        self._expire_waiting(report)
        self._claim(report)
        return report

    def _expire_waiting(self, report: TickReport) -> None:
        """Fail and refund jobs that have waited for capacity longer than the limit."""
        if self.max_queue_wait is None:
            return
        cutoff = utcnow() - self.max_queue_wait
        with self.sessions() as session:
            stale = session.scalars(
                select(Job.id).where(Job.status.in_(WAITING), Job.created_at < cutoff)
            ).all()
        hours = self.max_queue_wait.total_seconds() / 3600
        for job_id in stale:
            settled = self.lifecycle.fail(
                job_id,
                f"No render capacity became free within {hours:g} h of accepting this job, so "
                "it was not rendered and your xeconds were refunded. Start it again later.",
                only_from=WAITING,  # claimed in the meantime: no longer waiting
            )
            if settled.changed:
                log.warning(
                    "job %s waited longer than %s h for capacity; failed",
                    job_id,
                    hours,
                    extra=job_fields(job_id),
                )
                report.expired.append(job_id)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if not self._attempts or now - self._last_heartbeat < self.heartbeat_sec:
            return
        self._last_heartbeat = now
        self.lifecycle.renew_leases(self.owner, self.lease)

    def _watch(self, report: TickReport) -> None:
        for job_id, att in list(self._attempts.items()):
            with self.sessions() as session:
                job = session.get(Job, job_id)
                status = job.status if job else None
                mine = job is not None and job.attempts == att.attempt
                limit = (
                    time_limit_sec(job, self.time_base_sec, self.time_per_frame_sec) if job else 0
                )
            if status is None or status.is_terminal or not mine:
                # Settled by the driver, cancelled by the owner, failed by an operator, or taken
                # over elsewhere: make sure nothing keeps computing for it.
                if status in (JobStatus.CANCELLED, JobStatus.FAILED) or not mine:
                    self.launcher.stop(att.submission_id)
                    report.stopped.append(job_id)
                self._attempts.pop(job_id, None)
                if status is JobStatus.DONE and mine and self.on_done is not None:
                    try:
                        self.on_done(job_id, att.attempt)
                    except Exception:  # metrics must never stop the loop
                        log.exception("recording the finished render failed")
                continue
            info = self.launcher.info(att.submission_id)
            if info.state.alive:
                if time.monotonic() - att.started > limit:
                    self.launcher.stop(att.submission_id)
                    self._attempts.pop(job_id, None)
                    self.lifecycle.fail(
                        job_id,
                        f"The render took longer than its time limit ({limit:.0f}s for this clip) "
                        "and was stopped. Your xeconds were refunded; try again, or a shorter "
                        "clip or lower target_fps.",
                        attempt=att.attempt,
                    )
                    report.timed_out.append(job_id)
                continue
            self._attempts.pop(job_id, None)
            if info.logs:
                log.warning(
                    "job %s attempt %d ended; output tail:\n%s",
                    job_id,
                    att.attempt,
                    info.logs,
                    extra=job_fields(job_id, att.attempt),
                )
            reason = info.message or f"the render driver ended ({info.state.value})"
            if self._lost(job_id, att.attempt, reason):
                report.lost.append(job_id)

    def _reap(self, report: TickReport) -> None:
        now = utcnow()
        with self.sessions() as session:
            expired = session.execute(
                select(Job.id, Job.attempts, Job.ray_submission_id).where(
                    Job.status.in_(RUNNING),
                    (Job.lease_expires_at.is_(None)) | (Job.lease_expires_at < now),
                )
            ).all()
        for job_id, attempt, submission_id in expired:
            if job_id in self._attempts:
                continue
            sid = submission_id or submission_id_for(job_id, attempt)
            info = self.launcher.info(sid)
            if info.state.alive:
                if self.lifecycle.adopt(job_id, attempt, self.owner, self.lease):
                    self._attempts[job_id] = _Attempt(sid, attempt, time.monotonic())
                    report.adopted.append(job_id)
                continue
            detail = f" ({info.message})" if info.message else ""
            reason = f"its dispatcher stopped renewing the lease{detail}"
            if self._lost(job_id, attempt, reason):
                report.lost.append(job_id)

    def _lost(self, job_id: str, attempt: int, reason: str) -> bool:
        """Retry the job if attempts remain, else fail and refund it. False if it moved on."""
        return self.lifecycle.retry_or_fail(job_id, attempt, reason, self.max_attempts)

    def _claim(self, report: TickReport) -> None:
        if time.monotonic() < self._submit_retry_at:
            return
        chosen: list[Placement] = []

        def describe(running: int) -> str:
            chosen.append(self.planner.place(running))
            return chosen[-1].note

        while True:
            claim = self.lifecycle.claim_next(
                self.owner, self.lease, self.capacity, describe=describe
            )
            if claim is None:
                return
            job_id, attempt = claim.job_id, claim.attempt
            placement = chosen[-1]
            log.info("job %s attempt %d: %s", job_id, attempt, placement.note)
            try:
                sid = self.launcher.submit(job_id, attempt, placement.options)
            except LaunchUnavailable as exc:
                # The cluster cannot take renders right now (its job API is still starting, or
                # it is unreachable): that is waiting for capacity, not a failed attempt.
                log.warning(
                    "submitting job %s attempt %d failed: %s",
                    job_id,
                    attempt,
                    exc,
                    extra=job_fields(job_id, attempt),
                )
                self.lifecycle.unclaim(job_id, attempt, f"the render cluster is not ready ({exc})")
                self._submit_retry_at = time.monotonic() + self.submit_backoff_sec
                return
            except Exception as exc:
                # Anything else is a fault in the submission itself (a bug, a refused request):
                # waiting would not cure it, so the attempt counts as lost.
                log.exception(
                    "submitting job %s attempt %d raised",
                    job_id,
                    attempt,
                    extra=job_fields(job_id, attempt),
                )
                self._lost(job_id, attempt, f"the render could not be submitted ({exc})")
                continue
            self._attempts[job_id] = _Attempt(sid, attempt, time.monotonic())
            report.claimed.append(job_id)

    def shutdown(self) -> None:
        """Give up this dispatcher's leases so a successor adopts its renders at once."""
        self.lifecycle.release_leases(self.owner)
        self._attempts.clear()


def run_loop(
    dispatcher: Dispatcher,
    stop: threading.Event,
    *,
    poll_sec: float,
    wake: Subscription | None = None,
    webhooks: WebhookSender | None = None,
    sweep: Callable[[], object] | None = None,
    sweep_interval_sec: float = 300.0,
) -> None:
    """Tick until `stop` is set; a status event wakes the loop early (a cancel, a new job).

    `sweep` (reframe.services.sweep) runs every `sweep_interval_sec`, starting with the first
    round; every dispatcher runs it, and it is safe when several do at once.
    """
    # Deliveries run beside the loop, never in it: a receiver that trickles its answer (or a
    # host whose DNS hangs) would otherwise hold up claims, cancels and time limits.
    pool = WebhookPool(webhooks, poll_sec=poll_sec).start() if webhooks is not None else None
    try:
        _loop(dispatcher, stop, poll_sec, wake, sweep, sweep_interval_sec)
    finally:
        if pool is not None:
            pool.stop()


def _loop(
    dispatcher: Dispatcher,
    stop: threading.Event,
    poll_sec: float,
    wake: Subscription | None,
    sweep: Callable[[], object] | None,
    sweep_interval_sec: float,
) -> None:
    next_sweep = time.monotonic()
    while not stop.is_set():
        try:
            dispatcher.tick()
        except Exception:
            log.exception("dispatcher tick failed; retrying")
        if sweep is not None and time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + sweep_interval_sec
            try:
                sweep()
            except Exception:
                log.exception("storage sweep failed; retrying in %s s", sweep_interval_sec)
        if wake is not None:
            deadline = time.monotonic() + poll_sec
            while not stop.is_set() and time.monotonic() < deadline:
                if wake.get(timeout=min(0.5, poll_sec)) is not None:
                    break
        else:
            stop.wait(poll_sec)
