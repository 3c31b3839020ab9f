"""Operator commands against real SQLite and PostgreSQL: `reframe accounts disable|enable`,
`reframe jobs list|show|fail|refund`, `reframe ledger show`. Each change is audited, goes
through the same services as the API (the job lifecycle for jobs), and changes nothing when
run a second time."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from reframe.cli import main
from reframe.db.models import (
    Account,
    AuditEntry,
    CreditPool,
    File,
    FileRole,
    FileStatus,
    Job,
    JobEvent,
    JobStatus,
    LedgerEntry,
    LedgerReason,
)
from reframe.jobs.lifecycle import JobLifecycle
from reframe.services import ledger, web_auth
from tests.fixtures.app import ApiHarness, auth
from tests.fixtures.db import TestDatabase
from tests.jobs.factories import accepted_job, account_with_credit
from tests.web.test_auth import form_token

REASON = "chargeback filed on 2026-12-01"


@pytest.fixture
def cli_env(db: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestDatabase:
    monkeypatch.setenv("REFRAME_DATABASE_URL", db.url)
    monkeypatch.setenv("REFRAME_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REFRAME_OPERATOR", "ops-on-call")
    return db


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def counts(db: TestDatabase, job_id: str) -> tuple[int, int, int]:
    """(ledger rows, events, audit rows) of a job: what a second run must leave unchanged."""
    with db.session() as session:
        return (
            int(session.scalar(select(func.count()).where(LedgerEntry.job_id == job_id)) or 0),
            int(session.scalar(select(func.count()).where(JobEvent.job_id == job_id)) or 0),
            int(session.scalar(select(func.count()).where(AuditEntry.job_id == job_id)) or 0),
        )


def studio_login(api: ApiHarness, email: str, password: str) -> TestClient:
    browser = TestClient(api.app, base_url="http://testserver")
    token = form_token(browser, "/login")
    resp = browser.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return browser


def test_disable_refuses_the_key_and_the_session_with_403_and_enable_restores_both(
    api: ApiHarness, cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    account_id, key = api.create_account("ann@example.com")
    with cli_env.session() as session:
        account = web_auth.find_account_by_email(session, "ann@example.com")
        assert account is not None
        web_auth.set_password(session, account, "correct horse battery")
        session.commit()
    browser = studio_login(api, "ann@example.com", "correct horse battery")
    assert api.client.get("/me", headers=auth(key)).status_code == 200
    assert browser.get("/me").status_code == 200

    code, out, err = run(
        capsys, "accounts", "disable", "--email", "Ann@Example.com", "--reason", REASON
    )
    assert code == 0, err
    assert "ann@example.com is now disabled" in out
    assert "reframe: database " in err

    refused = api.client.get("/me", headers=auth(key))
    assert refused.status_code == 403
    assert "disabled by the operator" in refused.json()["detail"]
    by_cookie = browser.get("/me")
    assert by_cookie.status_code == 403
    assert "disabled by the operator" in by_cookie.json()["detail"]
    page = browser.get("/studio")
    assert page.status_code == 403
    assert "Account disabled" in page.text
    # Logging in again (correct password) says why instead of "incorrect password".
    again = TestClient(api.app, base_url="http://testserver")
    token = form_token(again, "/login")
    login = again.post(
        "/login",
        data={"email": "ann@example.com", "password": "correct horse battery", "csrf_token": token},
    )
    assert login.status_code == 403
    assert "disabled by the operator" in login.text

    code, out, _ = run(capsys, "accounts", "disable", "--email", "ann@example.com", "--reason", "x")
    assert code == 0
    assert "already disabled; nothing changed" in out

    code, out, _ = run(capsys, "accounts", "enable", "--email", "ann@example.com", "--reason", "ok")
    assert code == 0
    assert "now enabled" in out
    assert api.client.get("/me", headers=auth(key)).status_code == 200
    assert browser.get("/me").status_code == 200
    code, out, _ = run(capsys, "accounts", "enable", "--email", "ann@example.com", "--reason", "ok")
    assert "already enabled; nothing changed" in out

    with cli_env.session() as session:
        trail = session.scalars(
            select(AuditEntry).where(AuditEntry.account_id == account_id).order_by(AuditEntry.id)
        ).all()
        assert [(a.action, a.operator, a.reason) for a in trail] == [
            ("account.disable", "ops-on-call", REASON),
            ("account.enable", "ops-on-call", "ok"),
        ]


def test_a_reason_is_required(cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["accounts", "create", "--email", "bo@example.com"]) == 0
    code, _, err = run(capsys, "accounts", "disable", "--email", "bo@example.com", "--reason", " ")
    assert code == 2
    assert "--reason" in err


def _done_job(db: TestDatabase, account: Account, *, charge: int = 10) -> str:
    """A job that rendered and ended done, the way the dispatcher and driver make it."""
    account_id = account.id
    job_id = accepted_job(db.sessionmaker, account, charge=charge, frames_total=40)
    life = JobLifecycle(db.sessionmaker)
    claim = life.claim_next("test-dispatcher", timedelta(seconds=30), capacity=99)
    assert claim is not None
    assert claim.job_id == job_id
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        output = File(
            project_id=job.project_id,
            account_id=account_id,
            role=FileRole.OUTPUT,
            status=FileStatus.READY,
            storage_key=f"outputs/{account_id}/{job_id}.mp4",
            filename="out.mp4",
            content_type="video/mp4",
        )
        session.add(output)
        session.commit()
        output_id = output.id
    life.record_progress(job_id, claim.attempt, 40, 40)
    assert life.complete(job_id, output_id, attempt=claim.attempt)
    return job_id


def test_jobs_fail_goes_through_the_lifecycle_refunds_once_and_is_idempotent(
    cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    account = account_with_credit(cli_env.sessionmaker, paid=50)
    job_id = accepted_job(cli_env.sessionmaker, account, charge=12)
    running = accepted_job(cli_env.sessionmaker, account, charge=6)
    life = JobLifecycle(cli_env.sessionmaker)
    claim = life.claim_next("test-dispatcher", timedelta(seconds=30), capacity=99)
    assert claim is not None
    assert claim.job_id == job_id  # the older one: now cold_start, "running"

    code, out, err = run(capsys, "jobs", "fail", job_id, "--reason", "input is abusive")
    assert code == 0, err
    assert "12 xeconds refunded" in out
    before = counts(cli_env, job_id)
    with cli_env.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.FAILED
        assert job.refunded_xeconds == 12
        assert job.error is not None
        assert "input is abusive" in job.error
        assert job.lease_owner is None
        assert job.events[-1].message == "failed by the operator: input is abusive"
        refund = session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.job_id == job_id, LedgerEntry.reason == LedgerReason.JOB_REFUND
            )
        ).one()
        assert (refund.delta, refund.pool) == (12, CreditPool.PAID)
        assert refund.note is not None
        assert "input is abusive" in refund.note
        audit = session.scalars(select(AuditEntry).where(AuditEntry.job_id == job_id)).one()
        assert (audit.action, audit.operator, audit.account_id) == (
            "job.fail",
            "ops-on-call",
            account.id,
        )
        assert audit.detail == {"previous_status": "cold_start", "refunded_xeconds": 12}
        assert ledger.balance(session, account.id).paid == 50 - 6

    code, out, _ = run(capsys, "jobs", "fail", job_id, "--reason", "again")
    assert code == 0
    assert "already failed; nothing changed" in out
    assert counts(cli_env, job_id) == before

    # A queued job fails the same way; a done job cannot fail (its refund is `jobs refund`).
    assert run(capsys, "jobs", "fail", running, "--reason", "cleanup")[0] == 0
    done = _done_job(cli_env, account)
    code, _, err = run(capsys, "jobs", "fail", done, "--reason", "late")
    assert code == 2
    assert "already done" in err
    assert "reframe jobs refund" in err
    code, _, err = run(capsys, "jobs", "fail", "nope", "--reason", "typo")
    assert code == 2
    assert "not found" in err


def test_jobs_refund_gives_back_what_is_left_once(
    cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    account = account_with_credit(cli_env.sessionmaker, paid=100)
    done = _done_job(cli_env, account, charge=10)

    code, out, err = run(capsys, "jobs", "refund", done, "--reason", "customer complaint")
    assert code == 0, err
    assert "10 xeconds refunded" in out
    after_first = counts(cli_env, done)
    code, out, _ = run(capsys, "jobs", "refund", done, "--reason", "customer complaint")
    assert "nothing left to refund; nothing changed" in out
    assert counts(cli_env, done) == after_first
    with cli_env.session() as session:
        job = session.get(Job, done)
        assert job is not None
        assert (job.status, job.refunded_xeconds) == (JobStatus.DONE, 10)
        assert job.events[-1].message == "10 xeconds refunded by the operator: customer complaint"
        assert job.events[-1].status is JobStatus.DONE

    # Cancelled half-way: the owner got the unrendered half back; the operator gives the rest.
    half = accepted_job(cli_env.sessionmaker, account, charge=8, frames_total=40)
    life = JobLifecycle(cli_env.sessionmaker)
    claim = life.claim_next("test-dispatcher", timedelta(seconds=30), capacity=99)
    assert claim is not None
    assert claim.job_id == half
    life.record_progress(half, claim.attempt, 20, 40)
    _, settled = life.cancel(half, account.id)
    assert settled.refunded == 4
    code, out, _ = run(capsys, "jobs", "refund", half, "--reason", "render was unusable")
    assert code == 0
    assert "4 xeconds refunded" in out
    assert run(capsys, "jobs", "refund", half, "--reason", "again")[1].startswith(
        f"job {half} has nothing left"
    )
    with cli_env.session() as session:
        job = session.get(Job, half)
        assert job is not None
        assert job.refunded_xeconds == job.charged_xeconds == 8
        given = session.scalars(
            select(LedgerEntry.reason).where(LedgerEntry.job_id == half, LedgerEntry.delta > 0)
        ).all()
        assert sorted(given) == [LedgerReason.ADJUSTMENT, LedgerReason.JOB_REFUND]
        assert ledger.balance(session, account.id).paid == 100

    # A job still waiting or running is failed (with its refund), not refunded.
    waiting = accepted_job(cli_env.sessionmaker, account, charge=3)
    code, _, err = run(capsys, "jobs", "refund", waiting, "--reason", "early")
    assert code == 2
    assert "still queued" in err


def test_jobs_list_and_show(cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    ann = account_with_credit(cli_env.sessionmaker, paid=40)
    bob = account_with_credit(cli_env.sessionmaker, paid=40)
    done = _done_job(cli_env, ann, charge=5)
    queued = accepted_job(cli_env.sessionmaker, ann, charge=7)
    other = accepted_job(cli_env.sessionmaker, bob, charge=9)
    assert run(capsys, "jobs", "refund", done, "--reason", "goodwill")[0] == 0

    code, out, _ = run(capsys, "jobs", "list", "--json", "--email", ann.email)
    assert code == 0
    rows = json.loads(out)
    assert {r["id"] for r in rows} == {done, queued}
    assert {r["email"] for r in rows} == {ann.email}
    code, out, _ = run(capsys, "jobs", "list", "--json", "--status", "queued")
    assert {r["id"] for r in json.loads(out)} == {queued, other}
    code, out, _ = run(capsys, "jobs", "list")
    assert all(job in out for job in (done, queued, other))
    code, _, err = run(capsys, "jobs", "list", "--status", "finished")
    assert code == 2
    assert "statuses are" in err

    code, out, _ = run(capsys, "jobs", "show", done, "--json")
    shown: dict[str, Any] = json.loads(out)
    assert shown["status"] == "done"
    assert [e["status"] for e in shown["events"]] == [
        "queued",
        "cold_start",
        "processing",
        "done",
        "done",
    ]
    assert [(e["reason"], e["delta"]) for e in shown["ledger"]] == [
        ("job_charge", -5),
        ("job_refund", 5),
    ]
    assert [(a["action"], a["reason"]) for a in shown["audit"]] == [("job.refund", "goodwill")]
    code, out, _ = run(capsys, "jobs", "show", done)
    assert "job.refund" in out
    assert "refunded by the operator: goodwill" in out


def test_ledger_show_lists_every_entry_with_running_balances(
    cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accounts", "create", "--email", "cy@example.com", "--free-xeconds", "30"]) == 0
    assert (
        main(["credits", "grant", "--email", "cy@example.com", "--xeconds", "50", "--kind", "paid"])
        == 0
    )
    assert main(["accounts", "disable", "--email", "cy@example.com", "--reason", "fraud"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "ledger", "show", "--email", "cy@example.com", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["disabled"] is True
    assert data["balance"] == {"free": 30, "paid": 50}
    assert [(e["reason"], e["pool"], e["delta"]) for e in data["entries"]] == [
        ("signup", "free", 30),
        ("grant", "paid", 50),
    ]
    assert [(e["balance_free"], e["balance_paid"]) for e in data["entries"]] == [(30, 0), (30, 50)]
    assert [(a["action"], a["reason"]) for a in data["audit"]] == [("account.disable", "fraud")]
    code, out, _ = run(capsys, "ledger", "show", "--email", "cy@example.com")
    assert "balance: 50 paid + 30 free = 80 xeconds" in out
    assert re.search(r"ledger of cy@example.com \(disabled\)", out)
