"""A real render through the whole service, observed as an operator would: the API accepts the
job, the dispatcher actor claims it and runs the render driver, the driver renders it on Ray
with the real RIFE weights. Then one scrape of GET /metrics counts the render (the database's
counters and the dispatcher's histograms from its multiprocess files), and the JSON log lines
of every process, the API, the dispatcher, the driver and the pipeline's actors, carry the
job's id and attempt, starting from the request id that accepted it."""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reframe.config import Settings
from reframe.db.models import Job, JobStatus
from reframe.jobs.launchers import submission_id_for
from reframe.logs import configure_logging
from reframe.serving import start_dispatcher
from tests.api.test_observability import scrape, value
from tests.fixtures.app import auth, make_app
from tests.fixtures.db import TestDatabase
from tests.fixtures.media import make_clip

pytestmark = [pytest.mark.postgres, pytest.mark.ray, pytest.mark.weights, pytest.mark.slow]


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            yield json.loads(line)
        except ValueError:
            continue


def test_a_real_render_is_counted_in_metrics_and_traceable_in_logs(
    ray_runtime: ModuleType, postgres_db: TestDatabase, tmp_path: Path, rife_weights: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "home",
        database_url=postgres_db.url,
        rife_weights=rife_weights,
        dispatch_poll_sec=0.2,
        max_concurrent_renders=1,
        log_format="json",
        render_chunk_frames=16,
    )
    api_log = io.StringIO()
    handler = configure_logging("api", fmt="json", stream=api_log, secrets=settings.secret_values())
    trace = f"trace-{uuid.uuid4().hex}"
    _, stop = start_dispatcher(settings, launcher="subprocess")
    try:
        with TestClient(make_app(settings, postgres_db), base_url="http://testserver") as client:
            from reframe.services import accounts

            with postgres_db.session() as session:
                _, issued = accounts.create_account(session, settings, "watcher@example.com")
                session.commit()
            key = issued.plaintext
            clip = make_clip(tmp_path / "clip.mp4", frames=16)
            presign = client.post(
                "/upload/presign",
                headers=auth(key),
                json={"filename": "clip.mp4", "content_type": "video/mp4"},
            ).json()
            put = client.put(
                presign["upload_url"],
                content=clip.read_bytes(),
                headers={"Content-Type": "video/mp4"},
            )
            assert put.status_code in (200, 201, 204), put.text
            created = client.post(
                "/jobs",
                headers={**auth(key), "X-Request-ID": trace},
                json={
                    "r2_key": presign["key"],
                    "project_id": presign["project_id"],
                    "target_fps": 48,
                },
            )
            assert created.status_code == 200, created.text
            assert created.headers["x-request-id"] == trace
            job_id = created.json()["job_id"]

            deadline = time.monotonic() + 400
            while True:
                with postgres_db.session() as session:
                    job = session.get(Job, job_id)
                    assert job is not None
                    status, frames, charged = job.status, job.frames_total, job.charged_xeconds
                if status.is_terminal:
                    break
                assert time.monotonic() < deadline, f"the job is still {status.value}"
                time.sleep(0.5)
            assert status is JobStatus.DONE

            # The dispatcher records the render's histograms when it sees the job done, on its
            # next tick: wait for that, not for a fixed time.
            deadline = time.monotonic() + 60
            samples = scrape(client)
            while value(samples, "reframe_render_frames_per_second_count") < 1:
                assert time.monotonic() < deadline, "the dispatcher never recorded the render"
                time.sleep(0.2)
                samples = scrape(client)
    finally:
        stop()
        logging.getLogger().removeHandler(handler)

    assert frames == 32
    assert value(samples, "reframe_jobs", status="done") == 1
    assert value(samples, "reframe_jobs_accepted_total") == 1
    assert value(samples, "reframe_jobs_completed_total") == 1
    assert value(samples, "reframe_jobs_failed_total") == 0
    assert value(samples, "reframe_render_frames_total") == 32
    assert value(samples, "reframe_xeconds_charged_total", pool="free") == charged
    assert value(samples, "reframe_xeconds_refunded_total", pool="free") == 0
    assert value(samples, "reframe_queue_depth") == 0
    assert value(samples, "reframe_render_frames_per_second_count") == 1
    assert value(samples, "reframe_render_time_to_first_frame_seconds_count") == 1
    assert value(samples, "reframe_render_duration_seconds_count") == 1
    fps = value(samples, "reframe_render_frames_per_second_sum")
    seconds = value(samples, "reframe_render_duration_seconds_sum")
    assert fps == pytest.approx(32 / seconds)
    assert 0 < value(samples, "reframe_render_time_to_first_frame_seconds_sum") < seconds
    posted = {"method": "POST", "route": "/jobs", "status": "200"}
    assert value(samples, "reframe_http_requests_total", **posted) == 1

    # Every process's lines: this one's (the API), the driver's log file, and Ray's log files
    # of its workers (the dispatcher actor and the pipeline's actors).
    texts = [api_log.getvalue()]
    driver_log = (
        Path(tempfile.gettempdir()) / "reframe-renders" / f"{submission_id_for(job_id, 1)}.log"
    )
    texts.append(driver_log.read_text())
    logs_dir = Path(ray_runtime._private.worker._global_node.get_logs_dir_path())
    texts += [p.read_text(errors="replace") for p in logs_dir.glob("worker-*")]
    trail = [line for text in texts for line in json_lines(text) if line.get("job_id") == job_id]
    by_component: dict[str, list[dict[str, Any]]] = {}
    for line in trail:
        by_component.setdefault(str(line.get("component")), []).append(line)
    assert {"api", "dispatcher", "driver", "actor"} <= set(by_component), sorted(by_component)
    (accepted,) = [line for line in by_component["api"] if "job accepted" in line["message"]]
    assert accepted["request_id"] == trace
    for component in ("dispatcher", "driver", "actor"):
        assert all(line["attempt"] == 1 for line in by_component[component]), component
    assert any("attempt claimed" in line["message"] for line in by_component["dispatcher"])
    assert any("render finished" in line["message"] for line in by_component["dispatcher"])
    assert any("job done" in line["message"] for line in by_component["driver"])
    assert any(line["message"].startswith("chunk ") for line in by_component["actor"])
