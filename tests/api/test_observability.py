"""GET /metrics and request ids, through the real app on SQLite and PostgreSQL: numbers from the
database, from this process, and from other processes' multiprocess files, in one scrape."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from reframe.db.base import utcnow
from reframe.db.models import CreditPool, Job, WebhookDelivery
from reframe.jobs.lifecycle import JobLifecycle
from tests.fixtures.app import ApiFactory, ApiHarness, auth
from tests.jobs.factories import accepted_job, account_with_credit

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_request_ids_are_taken_from_the_client_or_made_and_returned(api: ApiHarness) -> None:
    given = api.client.get("/healthz", headers={"X-Request-ID": "client-chosen-42"})
    assert given.headers["x-request-id"] == "client-chosen-42"
    made = api.client.get("/pricing/config")
    assert len(made.headers["x-request-id"]) == 32
    # Something a client could use to forge log lines is replaced, not echoed.
    odd = api.client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert odd.headers["x-request-id"] not in ("a b\tc", "")


def test_requests_are_counted_by_route_template_and_status(api: ApiHarness) -> None:
    _, key = api.create_account()
    for _ in range(3):
        assert api.client.get("/jobs/not-a-job", headers=auth(key)).status_code == 404
    assert api.client.get("/jobs/another").status_code == 401
    assert api.client.get("/no/such/route").status_code == 404
    samples = scrape(api.client)
    route = {"method": "GET", "route": "/jobs/{job_id}"}
    assert value(samples, "reframe_http_requests_total", **route, status="404") == 3
    assert value(samples, "reframe_http_requests_total", **route, status="401") == 1
    assert value(samples, "reframe_http_request_duration_seconds_count", **route, status="404") == 3
    assert (
        value(samples, "reframe_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    # No raw paths (job ids, tokens) in any label.
    assert not any("not-a-job" in str(labels) for _, labels in samples)


def test_rate_limit_refusals_are_counted(api_factory: ApiFactory) -> None:
    api = api_factory(rate_limit_write_per_sec=0.001, rate_limit_write_burst=1)
    _, key = api.create_account()
    body = {"filename": "a.mp4", "content_type": "video/mp4"}
    assert api.client.post("/upload/presign", json=body, headers=auth(key)).status_code == 200
    assert api.client.post("/upload/presign", json=body, headers=auth(key)).status_code == 429
    samples = scrape(api.client)
    assert value(samples, "reframe_rate_limit_refusals_total", kind="write") == 1
    assert value(samples, "reframe_rate_limit_refusals_total", kind="read") == 0
    # The refused request is still counted under its route, before the router saw it.
    assert (
        value(
            samples,
            "reframe_http_requests_total",
            method="POST",
            route="/upload/presign",
            status="429",
        )
        == 1
    )


def test_job_and_money_counters_come_from_the_database(api_factory: ApiFactory) -> None:
    first, second = api_factory(), api_factory()  # two replicas of one service
    sessions = first.db.sessionmaker
    payer = account_with_credit(sessions, free=30, paid=100)
    life = JobLifecycle(sessions)
    done = accepted_job(sessions, payer, charge=4, frames_total=40)
    failed = accepted_job(sessions, payer, charge=6, frames_total=40)
    cancelled = accepted_job(sessions, payer, charge=8, frames_total=40)
    free = accepted_job(
        sessions, payer, charge=3, pool=CreditPool.FREE, webhook_url="https://x.io/h"
    )
    waiting = accepted_job(sessions, payer, charge=2)
    lease = timedelta(seconds=30)
    for job_id in (done, failed, cancelled):
        claim = life.claim_next("dispatcher", lease, capacity=10)
        assert claim is not None
        assert claim.job_id == job_id
        life.record_progress(job_id, claim.attempt, 20, 40)
    with sessions() as session:
        job = session.get(Job, done)
        assert job is not None
        input_id = job.input_file_id
    assert life.complete(done, input_id)
    assert life.fail(failed, "bad media").refunded == 6
    assert life.cancel(cancelled, payer.id)[1].refunded == 4
    with sessions() as session:
        old = session.get(Job, waiting)
        assert old is not None
        old.created_at = utcnow() - timedelta(minutes=10)
        delivery = session.query(WebhookDelivery).filter_by(job_id=free).first()
        assert delivery is None  # acceptance itself sends no webhook
        for attempts, delivered_at in ((2, utcnow()), (6, None)):  # delivered; given up
            session.add(
                WebhookDelivery(
                    job_id=free,
                    account_id=payer.id,
                    url="https://x.io/h",
                    payload={},
                    attempts=attempts,
                    next_attempt_at=None,
                    delivered_at=delivered_at,
                )
            )
        session.commit()

    views = [scrape(first.client), scrape(second.client)]
    for samples in views:
        assert value(samples, "reframe_jobs", status="done") == 1
        assert value(samples, "reframe_jobs", status="failed") == 1
        assert value(samples, "reframe_jobs", status="cancelled") == 1
        assert value(samples, "reframe_jobs", status="queued") == 2
        assert value(samples, "reframe_queue_depth") == 2
        assert 590 < value(samples, "reframe_queue_oldest_age_seconds") < 3600
        assert value(samples, "reframe_jobs_accepted_total") == 5
        assert value(samples, "reframe_jobs_completed_total") == 1
        assert value(samples, "reframe_jobs_failed_total") == 1
        assert value(samples, "reframe_jobs_cancelled_total") == 1
        assert value(samples, "reframe_xeconds_charged_total", pool="paid") == 4 + 6 + 8 + 2
        assert value(samples, "reframe_xeconds_charged_total", pool="free") == 3
        assert value(samples, "reframe_xeconds_refunded_total", pool="paid") == 6 + 4
        assert value(samples, "reframe_jobs_refunded_total", pool="paid") == 2
        assert value(samples, "reframe_jobs_refunded_total", pool="free") == 0
        # done 40 (complete fills frames_done), failed and cancelled 20 each.
        assert value(samples, "reframe_render_frames_total") == 80
        assert value(samples, "reframe_webhook_deliveries_total", outcome="delivered") == 1
        assert value(samples, "reframe_webhook_deliveries_total", outcome="failed") == 1
        assert value(samples, "reframe_webhook_attempts_total") == 8
    # Every replica answers the database's numbers alike; only its own requests differ.
    database_names = {n for n, _ in views[0] if not n.startswith("reframe_http")}
    for name, labels in views[0]:
        if name in database_names and name != "reframe_queue_oldest_age_seconds":
            assert views[0][(name, labels)] == views[1].get((name, labels)), name


def test_the_metrics_token_guards_the_endpoint(api_factory: ApiFactory) -> None:
    api = api_factory(metrics_token="scrape-token-0123456789")
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=auth("wrong")).status_code == 401
    samples = scrape(api.client, Authorization="Bearer scrape-token-0123456789")
    assert ("reframe_jobs_accepted_total", frozenset()) in samples
    assert "/metrics" not in api.client.get("/openapi.json").text


def test_a_reachable_service_without_a_token_keeps_its_numbers_to_itself(
    api_factory: ApiFactory,
) -> None:
    """Job counts and xeconds charged are the business's figures: a service others can reach
    serves /metrics only with REFRAME_METRICS_TOKEN, and says so."""
    exposed = api_factory(
        public_base_url="https://render.example.com", secret_key="s" * 48, metrics_token=None
    )
    refused = exposed.client.get("/metrics")
    assert refused.status_code == 403
    assert "REFRAME_METRICS_TOKEN" in refused.json()["detail"]


WRITER = textwrap.dedent(
    """
    import sys
    from reframe.metrics import ProcessMetrics, multiprocess_active
    assert multiprocess_active()
    m = ProcessMetrics()
    for _ in range(int(sys.argv[1])):
        m.http_requests.labels("GET", "/healthz", "200").inc()
        m.http_duration.labels("GET", "/healthz", "200").observe(0.003)
    m.render_fps.observe(float(sys.argv[2]))
    """
)


def test_other_processes_files_are_added_to_this_processs_values(
    api_factory: ApiFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    for count, fps in ((2, 3.0), (5, 100.0)):  # two replicas / a dispatcher that wrote files
        subprocess.run([sys.executable, "-c", WRITER, str(count), str(fps)], env=env, check=True)
    api = api_factory(metrics_dir=directory)
    assert api.client.get("/healthz").status_code == 200  # this process, in memory
    samples = scrape(api.client)
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(samples, "reframe_http_requests_total", **healthz) == 2 + 5 + 1
    assert value(samples, "reframe_http_request_duration_seconds_count", **healthz) == 8
    assert (
        value(samples, "reframe_http_request_duration_seconds_bucket", **healthz, le="0.005") == 7
    )
    assert value(samples, "reframe_render_frames_per_second_count") == 2
    assert value(samples, "reframe_render_frames_per_second_bucket", le="4.0") == 1
    assert value(samples, "reframe_render_frames_per_second_bucket", le="+Inf") == 2
    assert value(samples, "reframe_render_frames_per_second_sum") == pytest.approx(103.0)
