"""The webhook outbox on PostgreSQL, delivering to a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reframe.db import make_engine, make_sessionmaker
from reframe.db.models import Account, JobStatus, WebhookDelivery
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.webhooks import WebhookSender
from reframe.services.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.jobs.factories import accepted_job, account_with_credit
from tests.jobs.receiver import http_receiver

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_sessions(fresh_pg_url: str) -> Iterator[sessionmaker[Session]]:
    """A database of its own: the sender drains every due row, not just this test's."""
    engine = make_engine(fresh_pg_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def deliveries(sessions: sessionmaker[Session], job_id: str) -> list[WebhookDelivery]:
    with sessions() as s:
        return list(
            s.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.job_id == job_id)
                .order_by(WebhookDelivery.created_at)
            )
        )


def sender(sessions: sessionmaker[Session], *, allow_private: bool = True) -> WebhookSender:
    return WebhookSender(
        sessions, allow_private=allow_private, max_attempts=3, backoff_base_sec=0.05, timeout_sec=2
    )


def drain(ws: WebhookSender, rounds: int = 40) -> None:
    for _ in range(rounds):
        ws.run_once()
        time.sleep(0.05)


def test_status_changes_arrive_signed_in_order(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=20)
    with http_receiver() as rec:
        job_id = accepted_job(pg_sessions, account, charge=4, webhook_url=rec.url)
        life = JobLifecycle(pg_sessions)
        life.advance(job_id, JobStatus.COLD_START)
        life.fail(job_id, "store failed: bucket unreachable")
        ws = sender(pg_sessions)
        assert ws.run_once() == 2
        got = rec.wait_for(2)
    with pg_sessions() as s:
        acct = s.get(Account, account.id)
        assert acct is not None
        secret = acct.webhook_secret
    assert secret
    assert secret.startswith("whsec_")
    bodies = [json.loads(g.body) for g in got]
    assert [b["data"]["status"] for b in bodies] == ["cold_start", "failed"]
    assert bodies[1]["data"]["refunded_xeconds"] == 4
    assert bodies[1]["type"] == "job.status_changed"
    for g, b in zip(got, bodies, strict=True):
        assert verify(secret, g.headers[SIGNATURE_HEADER], g.body)
        assert g.headers[EVENT_ID_HEADER] == b["id"]
    rows = deliveries(pg_sessions, job_id)
    assert all(r.delivered_at is not None and r.next_attempt_at is None for r in rows)
    assert ws.run_once() == 0  # nothing is sent twice


def test_failed_deliveries_are_retried_with_the_same_event_id(
    pg_sessions: sessionmaker[Session],
) -> None:
    account = account_with_credit(pg_sessions, paid=20)
    with http_receiver() as rec:
        rec.statuses = [503, 500]
        job_id = accepted_job(pg_sessions, account, charge=4, webhook_url=rec.url)
        JobLifecycle(pg_sessions).advance(job_id, JobStatus.COLD_START)
        drain(sender(pg_sessions), rounds=30)
        got = rec.wait_for(3)
    assert len(got) == 3
    assert len({g.headers[EVENT_ID_HEADER] for g in got}) == 1
    (row,) = deliveries(pg_sessions, job_id)
    assert (row.attempts, row.last_status, row.next_attempt_at) == (3, 200, None)
    assert row.delivered_at is not None


def test_delivery_gives_up_after_max_attempts(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=20)
    with http_receiver() as rec:
        rec.statuses = [500] * 10
        job_id = accepted_job(pg_sessions, account, charge=4, webhook_url=rec.url)
        JobLifecycle(pg_sessions).advance(job_id, JobStatus.COLD_START)
        drain(sender(pg_sessions), rounds=30)
    (row,) = deliveries(pg_sessions, job_id)
    assert (row.attempts, row.last_status, row.delivered_at, row.next_attempt_at) == (
        3,
        500,
        None,
        None,
    )
    assert len(rec.received) == 3


def test_the_guard_applies_at_delivery_time(pg_sessions: sessionmaker[Session]) -> None:
    account = account_with_credit(pg_sessions, paid=20)
    with http_receiver() as rec:
        job_id = accepted_job(pg_sessions, account, charge=4, webhook_url=rec.url)
        JobLifecycle(pg_sessions).advance(job_id, JobStatus.COLD_START)
        assert sender(pg_sessions, allow_private=False).run_once() == 1
        time.sleep(0.2)
        assert rec.received == []
    (row,) = deliveries(pg_sessions, job_id)
    assert row.next_attempt_at is None
    assert row.delivered_at is None
    assert "loopback" in (row.last_error or "")
