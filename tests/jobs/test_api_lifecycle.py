"""The lifecycle's HTTP surface on SQLite and PostgreSQL: cancel, idempotency, webhook_url,
the webhook secret in /me, live progress on polls, and 429 rate limits."""

from __future__ import annotations

from typing import Any

import pytest

from reframe.db.models import Job, JobStatus
from reframe.jobs.progress import LiveProgress, RedisProgressStore
from reframe.services import transitions
from tests.fixtures.app import ApiFactory, ApiHarness, auth


def start_job(api: ApiHarness, key: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    headers = {**auth(key), **extra.pop("headers", {})}
    up = api.upload(key)
    body = {"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60, **extra}
    resp = api.client.post("/jobs", json=body, headers=headers)
    return resp.status_code, resp.json()


def balance(api: ApiHarness, key: str) -> int:
    me = api.client.get("/me", headers=auth(key)).json()
    total: int = me["balance"]["total_xeconds"]
    return total


def test_cancel_a_queued_job_refunds_everything(api: ApiHarness) -> None:
    _, key = api.create_account(free=0, paid=50)
    status, job = start_job(api, key)
    assert status == 200, job
    assert balance(api, key) == 50 - job["charged_xeconds"]
    resp = api.client.post(f"/jobs/{job['job_id']}/cancel", headers=auth(key))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["live_status"] == "cancelled"
    assert out["refunded_xeconds"] == job["charged_xeconds"]
    assert [e["status"] for e in out["events"]] == ["queued", "cancelled"]
    assert balance(api, key) == 50
    again = api.client.post(f"/jobs/{job['job_id']}/cancel", headers=auth(key))
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]
    assert balance(api, key) == 50


def test_cancel_checks_owner_and_existence(api: ApiHarness) -> None:
    _, owner = api.create_account(paid=50)
    _, other = api.create_account(paid=50)
    _, job = start_job(api, owner)
    assert api.client.post(f"/jobs/{job['job_id']}/cancel", headers=auth(other)).status_code == 403
    assert api.client.post("/jobs/nope/cancel", headers=auth(owner)).status_code == 404
    assert api.client.post(f"/jobs/{job['job_id']}/cancel").status_code == 401


def test_idempotency_key_replays_and_charges_once(api: ApiHarness) -> None:
    _, key = api.create_account(free=0, paid=50)
    up = api.upload(key)
    body = {"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60}
    headers = {**auth(key), "Idempotency-Key": "render-42"}
    first = api.client.post("/jobs", json=body, headers=headers)
    second = api.client.post("/jobs", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["job_id"] == second.json()["job_id"]
    assert balance(api, key) == 50 - first.json()["charged_xeconds"]
    changed = api.client.post("/jobs", json={**body, "target_fps": 120}, headers=headers)
    assert changed.status_code == 400
    assert "different request body" in changed.json()["detail"]
    assert balance(api, key) == 50 - first.json()["charged_xeconds"]
    # Another account may use the same key for its own job.
    _, key2 = api.create_account(free=0, paid=50)
    status, other = start_job(api, key2, headers={"Idempotency-Key": "render-42"})
    assert status == 200
    assert other["job_id"] != first.json()["job_id"]


def test_idempotency_keys_expire(api_factory: ApiFactory) -> None:
    api = api_factory(idempotency_ttl_sec=0)
    _, key = api.create_account(free=0, paid=50)
    headers = {"Idempotency-Key": "k1"}
    _, first = start_job(api, key, headers=headers)
    _, second = start_job(api, key, headers=headers)
    assert first["job_id"] != second["job_id"]


def test_webhook_url_is_guarded_and_signed_with_the_me_secret(api_factory: ApiFactory) -> None:
    api = api_factory()
    _, key = api.create_account(free=0, paid=50)
    status, body = start_job(api, key, webhook_url="http://127.0.0.1:9/hook")
    assert status == 400
    assert "loopback" in body["detail"]
    assert "REFRAME_WEBHOOK_ALLOW_PRIVATE" in body["detail"]
    status, body = start_job(api, key, webhook_url="ftp://example.com/x")
    assert status == 400
    assert balance(api, key) == 50  # nothing charged for refused requests

    lan = api_factory(webhook_allow_private=True)
    _, key = lan.create_account("lan@example.com", paid=50)
    status, job = start_job(lan, key, webhook_url="http://127.0.0.1:9/hook")
    assert status == 200, job
    secret = lan.client.get("/me", headers=auth(key)).json()["webhook_secret"]
    assert secret.startswith("whsec_")
    assert lan.client.get("/me", headers=auth(key)).json()["webhook_secret"] == secret
    with lan.db.session() as session:
        row = session.get(Job, job["job_id"])
        assert row is not None
        assert row.webhook_url == "http://127.0.0.1:9/hook"


def test_polls_see_live_progress_ahead_of_the_row(api: ApiHarness) -> None:
    _, key = api.create_account(paid=50)
    _, job = start_job(api, key)
    job_id = job["job_id"]
    with api.db.session() as session:
        row = transitions.lock_job(session, job_id)
        row.attempts = 1
        transitions.record(session, row, JobStatus.COLD_START)
        transitions.record(session, row, JobStatus.PROCESSING)
        row.frames_done, row.frames_total, row.progress = 10, 100, 0.1
        session.commit()
    api.app.state.progress.put(job_id, LiveProgress("processing", 60, 100, 4.0, 1, 0.0))
    out = api.client.get(f"/jobs/{job_id}", headers=auth(key)).json()
    assert (out["live_status"], out["frames_done"], out["progress"], out["eta_sec"]) == (
        "processing",
        60,
        0.6,
        4.0,
    )
    # Cancelling now bills the 60 % the live store knows was rendered.
    resp = api.client.post(f"/jobs/{job_id}/cancel", headers=auth(key)).json()
    charged = job["charged_xeconds"]
    assert resp["refunded_xeconds"] == charged - (charged * 60) // 100


def test_rate_limits_answer_429_with_retry_after(api_factory: ApiFactory) -> None:
    api = api_factory(rate_limit_read_per_sec=0.5, rate_limit_read_burst=3)
    _, key = api.create_account(paid=5)
    codes = [api.client.get("/me", headers=auth(key)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = api.client.get("/me", headers=auth(key))
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"
    assert "Retry in 2s" in resp.json()["detail"]
    # Another key has its own bucket.
    _, key2 = api.create_account(paid=5)
    assert api.client.get("/me", headers=auth(key2)).status_code == 200


@pytest.mark.redis
def test_with_redis_limits_and_live_progress_are_shared_between_apps(
    api_factory: ApiFactory, redis_url: str, redis_prefix: str
) -> None:
    # Two app instances (two API replicas) over one Redis: they share buckets and progress.
    options = {
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "rate_limit_read_per_sec": 0.2,
        "rate_limit_read_burst": 4,
    }
    first = api_factory(**options)
    second = api_factory(**options)
    _, key = first.create_account("shared@example.com", paid=50)
    codes = [
        app.client.get("/me", headers=auth(key)).status_code
        for app in (first, second, first, second, first)
    ]
    assert codes == [200, 200, 200, 200, 429]
    assert isinstance(first.app.state.progress, RedisProgressStore)
    first.app.state.progress.put("job-x", LiveProgress("processing", 5, 10, 1.0, 1, 0.0))
    got = second.app.state.progress.get("job-x")
    assert got is not None
    assert got.frames_done == 5
