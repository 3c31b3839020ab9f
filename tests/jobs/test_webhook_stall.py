"""A webhook receiver that never finishes answering cannot hold up the dispatcher: deliveries
run on workers of their own, each attempt inside one total deadline (issue 12, item 6)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.models import JobStatus, WebhookDelivery
from reframe.jobs.dispatcher import run_loop
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.webhooks import WebhookSender
from tests.jobs.factories import accepted_job, account_with_credit
from tests.jobs.receiver import trickling_receiver
from tests.jobs.test_dispatcher import Factory, db, job_of, make_dispatcher  # noqa: F401

pytestmark = pytest.mark.postgres


def _errors(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    with sessions() as s:
        rows = s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id))
        return [row.last_error or "" for row in rows]


def test_a_trickling_receiver_never_holds_up_claims_and_renders(
    db: tuple[str, sessionmaker[Session]],  # noqa: F811
    make_dispatcher: Factory,  # noqa: F811
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=50)
    with trickling_receiver(interval=0.5) as trickle:
        # Per-socket timeouts of 2 s never fire: a byte arrives every 0.5 s, for hours.
        sender = WebhookSender(
            sessions, allow_private=True, max_attempts=3, backoff_base_sec=60, timeout_sec=2
        )
        dispatcher, _ = make_dispatcher("ok")
        first = accepted_job(sessions, account, charge=5, webhook_url=trickle.url)
        stop = threading.Event()
        loop = threading.Thread(
            target=run_loop,
            args=(dispatcher, stop),
            kwargs={"poll_sec": 0.1, "webhooks": sender},
            daemon=True,
        )
        loop.start()
        try:
            assert trickle.connected.wait(30), "no delivery reached the receiver"
            second = accepted_job(sessions, account, charge=5)
            deadline = time.monotonic() + 90
            while {job_of(sessions, j).status for j in (first, second)} != {JobStatus.DONE}:
                assert time.monotonic() < deadline, (
                    "the dispatcher stopped claiming and finishing jobs while a receiver "
                    f"trickled: {[job_of(sessions, j).status for j in (first, second)]}"
                )
                time.sleep(0.2)
            # The trickling attempt was abandoned at its deadline and is due again later.
            deadline = time.monotonic() + 60
            while not any("deadline" in e for e in _errors(sessions, first)):
                assert time.monotonic() < deadline, _errors(sessions, first)
                time.sleep(0.2)
        finally:
            stop.set()
            loop.join(timeout=60)
        assert not loop.is_alive(), "the dispatcher loop did not stop"


def test_the_deadline_covers_a_resolver_that_hangs(
    db: tuple[str, sessionmaker[Session]],  # noqa: F811
) -> None:
    _, sessions = db
    account = account_with_credit(sessions, paid=50)
    release = threading.Event()

    def hanging(host: str, port: int) -> list[str]:
        release.wait(30)  # a DNS server that never answers, for as long as it likes
        return ["127.0.0.1"]

    sender = WebhookSender(
        sessions,
        allow_private=True,
        max_attempts=3,
        backoff_base_sec=60,
        timeout_sec=5,
        deadline_sec=1.0,
        resolver=hanging,
    )
    job_id = accepted_job(sessions, account, charge=5, webhook_url="http://hooks.example/x")
    JobLifecycle(sessions).advance(job_id, JobStatus.COLD_START)
    started = time.monotonic()
    try:
        assert sender.run_once() >= 1
    finally:
        release.set()
    assert time.monotonic() - started < 10
    errors = _errors(sessions, job_id)
    assert any("DNS" in e and "deadline" in e for e in errors), errors
    with sessions() as s:  # due again: a slow resolver is worth another try
        rows = list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)))
        assert all(row.next_attempt_at is not None for row in rows if row.last_error)
