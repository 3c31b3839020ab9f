"""Status changes, refunds and cancel on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.models import (
    CreditPool,
    Job,
    JobEvent,
    JobStatus,
    LedgerEntry,
    LedgerReason,
    WebhookDelivery,
)
from reframe.errors import Conflict, Forbidden
from reframe.jobs.events import MemoryEventBus
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.progress import LiveProgress, MemoryProgressStore, overlay_live
from reframe.services import ledger, transitions
from tests.jobs.factories import accepted_job, account_with_credit

pytestmark = pytest.mark.postgres


def refunds_of(sessions: sessionmaker[Session], job_id: str) -> list[LedgerEntry]:
    with sessions() as s:
        return list(
            s.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.job_id == job_id, LedgerEntry.reason == LedgerReason.JOB_REFUND
                )
            )
        )


def assert_ledger_matches(sessions: sessionmaker[Session], account_id: str, paid: int) -> None:
    with sessions() as s:
        total = s.scalar(
            select(func.sum(LedgerEntry.delta)).where(LedgerEntry.account_id == account_id)
        )
        assert ledger.balance(s, account_id).total == total
        assert ledger.balance(s, account_id).paid == paid


def load(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


def statuses(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    with sessions() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        events = list(rows)
    times = [e.at for e in events]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)
    return [e.status.value for e in events]


def test_failure_refunds_once_even_when_reported_twice(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=50)
    job_id = accepted_job(pg_sessions, account, charge=12)
    bus = MemoryEventBus()
    sub = bus.subscribe()
    life = JobLifecycle(pg_sessions, bus=bus)
    assert life.advance(job_id, JobStatus.COLD_START)
    first = life.fail(job_id, "decode failed: truncated file at frame 31")
    second = life.fail(job_id, "a second report of the same failure")
    assert (first.refunded, first.changed) == (12, True)
    assert (second.refunded, second.changed) == (0, False)
    job = load(pg_sessions, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "decode failed: truncated file at frame 31"
    assert job.refunded_xeconds == 12
    assert job.finished_at is not None
    assert len(refunds_of(pg_sessions, job_id)) == 1
    assert_ledger_matches(pg_sessions, account.id, paid=50)
    assert statuses(pg_sessions, job_id) == ["queued", "cold_start", "failed"]
    got = [sub.get(timeout=10.0), sub.get(timeout=10.0), sub.get(timeout=0.05)]
    assert [e.status if e else None for e in got] == ["cold_start", "failed", None]


def test_a_conditional_failure_leaves_a_job_that_moved_on(
    pg_sessions: sessionmaker[Session],
) -> None:
    account = account_with_credit(pg_sessions, paid=50)
    job_id = accepted_job(pg_sessions, account, charge=12)
    life = JobLifecycle(pg_sessions)
    assert life.advance(job_id, JobStatus.COLD_START)  # claimed after the waiting list was read
    waiting = (JobStatus.QUEUED, JobStatus.NO_WORKERS)
    settled = life.fail(job_id, "waited too long", only_from=waiting)
    assert (settled.status, settled.refunded, settled.changed) == (JobStatus.COLD_START, 0, False)
    assert load(pg_sessions, job_id).status is JobStatus.COLD_START
    assert refunds_of(pg_sessions, job_id) == []


def test_concurrent_failure_reports_refund_once(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=40)
    job_id = accepted_job(pg_sessions, account, charge=8)
    life = JobLifecycle(pg_sessions)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def report(n: int) -> None:
        barrier.wait()
        results.append(life.fail(job_id, f"reporter {n}").refunded)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 0, 8]
    assert len(refunds_of(pg_sessions, job_id)) == 1
    assert_ledger_matches(pg_sessions, account.id, paid=40)


def test_database_refuses_a_second_refund_row(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=20)
    job_id = accepted_job(pg_sessions, account, charge=5)
    JobLifecycle(pg_sessions).fail(job_id, "boom")
    with pg_sessions() as s, pytest.raises(IntegrityError):
        ledger.append(
            s,
            account.id,
            pool=CreditPool.PAID,
            delta=5,
            reason=LedgerReason.JOB_REFUND,
            job_id=job_id,
        )


def test_free_jobs_are_refunded_to_the_free_pool(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, free=30)
    job_id = accepted_job(pg_sessions, account, charge=4, pool=CreditPool.FREE)
    JobLifecycle(pg_sessions).fail(job_id, "model weights missing")
    with pg_sessions() as s:
        assert ledger.balance(s, account.id).free == 30


def test_cancel_before_frames_flow_refunds_everything(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=30)
    job_id = accepted_job(pg_sessions, account, charge=9)
    life = JobLifecycle(pg_sessions)
    life.advance(job_id, JobStatus.COLD_START)
    job, settled = life.cancel(job_id, account.id)
    assert (settled.status, settled.refunded) == (JobStatus.CANCELLED, 9)
    assert job.status is JobStatus.CANCELLED
    assert job.refunded_xeconds == 9
    assert_ledger_matches(pg_sessions, account.id, paid=30)
    with pytest.raises(Conflict, match="already cancelled"):
        life.cancel(job_id, account.id)
    assert life.fail(job_id, "late failure").changed is False
    assert len(refunds_of(pg_sessions, job_id)) == 1


def test_cancel_while_processing_refunds_the_unrendered_share(
    pg_sessions: sessionmaker[Session],
) -> None:
    account = account_with_credit(pg_sessions, paid=30)
    job_id = accepted_job(pg_sessions, account, charge=10)
    store = MemoryProgressStore()
    life = JobLifecycle(pg_sessions, progress=store, db_progress_interval_sec=3600)
    with pg_sessions() as s:
        job = transitions.lock_job(s, job_id)
        job.attempts = 1
        transitions.record(s, job, JobStatus.COLD_START)
        s.commit()
    report = life.tracker(job_id, attempt=1)
    report(10, 100)  # written to the row (first report)
    report(35, 100)  # throttled: only in the live store
    assert load(pg_sessions, job_id).frames_done == 10
    _, settled = life.cancel(job_id, account.id)
    # 35 % rendered: floor(10 * 0.35) = 3 kept, 7 back.
    assert settled.refunded == 7
    assert_ledger_matches(pg_sessions, account.id, paid=27)
    assert statuses(pg_sessions, job_id) == ["queued", "cold_start", "processing", "cancelled"]
    assert store.get(job_id) is None


def test_cancel_checks_the_owner(pg_sessions: sessionmaker[Session]) -> None:
    owner = account_with_credit(pg_sessions, paid=10)
    other = account_with_credit(pg_sessions, paid=10)
    job_id = accepted_job(pg_sessions, owner, charge=2)
    with pytest.raises(Forbidden):
        JobLifecycle(pg_sessions).cancel(job_id, other.id)
    assert load(pg_sessions, job_id).status is JobStatus.QUEUED


def test_progress_moves_cold_start_to_processing_and_completes(
    pg_sessions: sessionmaker[Session],
) -> None:
    account = account_with_credit(pg_sessions, paid=10)
    job_id = accepted_job(pg_sessions, account, charge=3)
    now = [0.0]
    store = MemoryProgressStore()
    life = JobLifecycle(pg_sessions, progress=store, clock=lambda: now[0])
    with pg_sessions() as s:
        job = transitions.lock_job(s, job_id)
        job.attempts = 2
        transitions.record(s, job, JobStatus.COLD_START)
        s.commit()
    life.record_progress(job_id, 2, 24, 96)
    job = load(pg_sessions, job_id)
    assert (job.status, job.frames_done, job.frames_total) == (JobStatus.PROCESSING, 24, 96)
    assert job.progress == pytest.approx(0.25)
    # An older attempt's driver is ignored.
    life.record_progress(job_id, 1, 90, 96)
    assert load(pg_sessions, job_id).frames_done == 24
    assert not life.complete(job_id, "nope", attempt=1)
    live = LiveProgress("processing", 48, 96, 5.0, 2, 0.0)
    assert overlay_live(load(pg_sessions, job_id), live) == (0.5, 48, 5.0)
    assert overlay_live(load(pg_sessions, job_id), None) == (0.25, 24, None)


def test_illegal_transitions_are_refused(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=10)
    job_id = accepted_job(pg_sessions, account, charge=3)
    life = JobLifecycle(pg_sessions)
    assert not life.advance(job_id, JobStatus.PROCESSING)  # queued cannot skip cold start
    assert not life.advance(job_id, JobStatus.DONE)
    with pg_sessions() as s:
        job = transitions.lock_job(s, job_id)
        with pytest.raises(transitions.IllegalTransition, match="queued"):
            transitions.record(s, job, JobStatus.DONE)
    for src, dsts in transitions.ALLOWED.items():
        if src.is_terminal:
            assert not dsts


def test_each_status_change_of_a_webhook_job_is_put_in_the_outbox(
    pg_sessions: sessionmaker[Session],
) -> None:
    account = account_with_credit(pg_sessions, paid=10)
    job_id = accepted_job(pg_sessions, account, charge=3, webhook_url="https://hooks.example/x")
    life = JobLifecycle(pg_sessions)
    life.advance(job_id, JobStatus.COLD_START)
    life.fail(job_id, "encode failed")
    with pg_sessions() as s:
        rows = list(
            s.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.job_id == job_id)
                .order_by(WebhookDelivery.created_at)
            )
        )
    assert [r.payload["data"]["status"] for r in rows] == ["cold_start", "failed"]
    assert rows[1].payload["data"]["refunded_xeconds"] == 3
    assert rows[1].payload["data"]["error"] == "encode failed"
    assert rows[1].payload["data"]["previous_status"] == "cold_start"
    assert all(r.next_attempt_at is not None and r.url == "https://hooks.example/x" for r in rows)
