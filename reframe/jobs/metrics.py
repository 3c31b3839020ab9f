"""The metrics the database knows, read at scrape time, and render histograms for the dispatcher.

`DatabaseCollector` answers every scrape with four aggregate queries (jobs by status, job money
in the ledger, webhook outbox, nothing per row): jobs are never deleted and the ledger is
append-only, so counts and sums of their rows are true counters whichever process asks and
however often the service restarted. See reframe.metrics for the whole design.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.base import utcnow
from reframe.db.models import (
    CreditPool,
    Job,
    JobEvent,
    JobStatus,
    LedgerEntry,
    LedgerReason,
    WebhookDelivery,
)
from reframe.logs import job_fields

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from reframe.metrics import ProcessMetrics

log = logging.getLogger(__name__)

_WAITING = (JobStatus.QUEUED, JobStatus.NO_WORKERS)
_ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class DatabaseCollector:
    """A prometheus-client collector over the service's database (a read-only snapshot)."""

    def __init__(
        self, sessions: sessionmaker[Session], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.sessions = sessions
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        with self.sessions() as session:
            jobs = session.execute(
                select(
                    Job.status,
                    func.count(),
                    func.coalesce(func.sum(Job.frames_done), 0),
                    func.min(Job.created_at),
                ).group_by(Job.status)
            ).all()
            money = session.execute(
                select(
                    LedgerEntry.reason,
                    LedgerEntry.pool,
                    func.count(),
                    func.coalesce(func.sum(LedgerEntry.delta), 0),
                )
                .where(
                    or_(
                        LedgerEntry.reason.in_((LedgerReason.JOB_CHARGE, LedgerReason.JOB_REFUND)),
                        # An operator's refund of what a partial refund left (reframe jobs
                        # refund) is an adjustment tied to the job.
                        (LedgerEntry.reason == LedgerReason.ADJUSTMENT)
                        & LedgerEntry.job_id.is_not(None)
                        & (LedgerEntry.delta > 0),
                    )
                )
                .group_by(LedgerEntry.reason, LedgerEntry.pool)
            ).all()
            outcome = case(
                (WebhookDelivery.delivered_at.is_not(None), "delivered"),
                (WebhookDelivery.next_attempt_at.is_(None), "failed"),
                else_="pending",
            )
            hooks = session.execute(
                select(
                    outcome, func.count(), func.coalesce(func.sum(WebhookDelivery.attempts), 0)
                ).group_by(outcome)
            ).all()
            session.rollback()

        now = self.clock()
        by_status = {
            JobStatus(status): (int(n), int(frames or 0), first)
            for status, n, frames, first in jobs
        }

        gauge = GaugeMetricFamily(
            "reframe_jobs", "Jobs in each status now (live_status).", labels=["status"]
        )
        for status in JobStatus:
            gauge.add_metric([status.value], by_status.get(status, (0, 0, None))[0])
        yield gauge

        waiting = [by_status[s] for s in _WAITING if s in by_status]
        oldest = min((first for _, _, first in waiting if first is not None), default=None)
        yield GaugeMetricFamily(
            "reframe_queue_depth",
            "Accepted jobs waiting for a render to start (queued or no_workers).",
            value=sum(n for n, _, _ in waiting),
        )
        yield GaugeMetricFamily(
            "reframe_queue_oldest_age_seconds",
            "Seconds since the oldest waiting job was accepted (0 when none waits).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
        )

        yield CounterMetricFamily(
            "reframe_jobs_accepted",
            "Jobs accepted (charged) since the database was created.",
            value=sum(n for n, _, _ in by_status.values()),
        )
        for status, name, text in (
            (JobStatus.DONE, "reframe_jobs_completed", "Jobs that ended done."),
            (JobStatus.FAILED, "reframe_jobs_failed", "Jobs that ended failed (and refunded)."),
            (JobStatus.CANCELLED, "reframe_jobs_cancelled", "Jobs cancelled by their owner."),
        ):
            yield CounterMetricFamily(name, text, value=by_status.get(status, (0, 0, None))[0])
        yield CounterMetricFamily(
            "reframe_render_frames",
            "Output frames rendered by jobs that ended (done, failed or cancelled).",
            value=sum(by_status[s][1] for s in _ENDED if s in by_status),
        )

        charged = CounterMetricFamily(
            "reframe_xeconds_charged", "Xeconds charged for accepted jobs.", labels=["pool"]
        )
        refunded = CounterMetricFamily(
            "reframe_xeconds_refunded", "Xeconds given back for jobs.", labels=["pool"]
        )
        refunds = CounterMetricFamily(
            "reframe_jobs_refunded", "Refund ledger entries for jobs.", labels=["pool"]
        )
        sums: dict[tuple[LedgerReason, CreditPool], tuple[int, int]] = {
            (LedgerReason(reason), CreditPool(pool)): (int(n), int(total))
            for reason, pool, n, total in money
        }
        for pool in CreditPool:
            charged.add_metric([pool.value], -sums.get((LedgerReason.JOB_CHARGE, pool), (0, 0))[1])
            entries, xeconds = sums.get((LedgerReason.JOB_REFUND, pool), (0, 0))
            extra_entries, extra_xeconds = sums.get((LedgerReason.ADJUSTMENT, pool), (0, 0))
            refunded.add_metric([pool.value], xeconds + extra_xeconds)
            refunds.add_metric([pool.value], entries + extra_entries)
        yield charged
        yield refunded
        yield refunds

        counts = {str(name): (int(n), int(attempts)) for name, n, attempts in hooks}
        deliveries = CounterMetricFamily(
            "reframe_webhook_deliveries",
            "Webhook notifications settled, by outcome (delivered, or failed after its last "
            "attempt).",
            labels=["outcome"],
        )
        for name in ("delivered", "failed"):
            deliveries.add_metric([name], counts.get(name, (0, 0))[0])
        yield deliveries
        yield GaugeMetricFamily(
            "reframe_webhook_deliveries_pending",
            "Webhook notifications waiting for their next attempt.",
            value=counts.get("pending", (0, 0))[0],
        )
        yield CounterMetricFamily(
            "reframe_webhook_attempts",
            "HTTP attempts made to deliver webhook notifications.",
            value=sum(a for _, a in counts.values()),
        )


class RenderObserver:
    """Called by the dispatcher when one of its render attempts ended `done`: records the
    attempt's frames per second, time to first frame and duration from the job's events."""

    def __init__(self, sessions: sessionmaker[Session], metrics: ProcessMetrics) -> None:
        self.sessions = sessions
        self.metrics = metrics

    def __call__(self, job_id: str, attempt: int) -> None:
        with self.sessions() as session:
            frames = session.scalar(select(Job.frames_total).where(Job.id == job_id))
            events = session.execute(
                select(JobEvent.status, JobEvent.at)
                .where(JobEvent.job_id == job_id)
                .order_by(JobEvent.id)
            ).all()
            session.rollback()
        starts = [i for i, (status, _) in enumerate(events) if status is JobStatus.COLD_START]
        if not starts:
            return
        # The attempt that ended is the last one started; earlier ones were lost and retried.
        tail = events[starts[-1] :]
        started = tail[0][1]
        first = next((at for status, at in tail if status is JobStatus.PROCESSING), None)
        done = next((at for status, at in tail if status is JobStatus.DONE), None)
        if done is None:
            return
        seconds = max((done - started).total_seconds(), 1e-3)
        self.metrics.render_seconds.observe(seconds)
        if first is not None:
            self.metrics.render_first_frame.observe(max(0.0, (first - started).total_seconds()))
        if frames:
            self.metrics.render_fps.observe(frames / seconds)
        log.info(
            "render finished: %s frames in %.1f s",
            frames,
            seconds,
            extra=job_fields(job_id, attempt),
        )
