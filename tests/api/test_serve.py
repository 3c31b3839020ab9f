"""Through Ray Serve over real HTTP: the deployment `reframe serve` starts, on the shared Ray."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from reframe.cli.serve import RunningService, settings_for, start_service
from reframe.db import make_engine, make_sessionmaker
from reframe.services import accounts
from tests.fixtures.cluster import free_port as _free_port
from tests.fixtures.media import make_clip


def test_public_url_follows_host_and_port_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    everywhere = "0.0.0.0"  # noqa: S104 - only a string here; nothing binds
    monkeypatch.delenv("REFRAME_PUBLIC_BASE_URL", raising=False)
    assert settings_for(everywhere, 9001).public_base_url == "http://127.0.0.1:9001"
    assert settings_for("127.0.0.1", 8000).public_base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("REFRAME_PUBLIC_BASE_URL", "http://localhost:7000")
    assert settings_for(everywhere, 9001).public_base_url == "http://localhost:7000"


@pytest.fixture
def service(
    ray_runtime: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningService]:
    monkeypatch.delenv("REFRAME_PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("REFRAME_DATA_DIR", str(tmp_path / "var"))
    port = _free_port()
    settings = settings_for("127.0.0.1", port)
    # The session Ray has no dashboard, so no dispatcher: this test is about the API over HTTP.
    running = start_service(settings, "127.0.0.1", port, background=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.ray
def test_canonical_workflow_over_serve_http(service: RunningService, tmp_path: Path) -> None:
    engine = make_engine(service.settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        _, issued = accounts.create_account(session, service.settings, "serve@example.com")
        session.commit()
    engine.dispose()
    key = issued.plaintext
    headers = {"Authorization": f"Bearer {key}"}
    clip = make_clip(tmp_path / "clip.mp4", frames=36, fps=24)

    with httpx.Client(base_url=service.url, timeout=30) as http:
        deadline = time.monotonic() + 30
        while http.get("/healthz").status_code != 200:  # the proxy may lag the replica
            assert time.monotonic() < deadline, "Serve never answered /healthz"
            time.sleep(0.2)
        assert http.get("/me").status_code == 401
        presign = http.post(
            "/upload/presign",
            headers=headers,
            json={"filename": "clip.mp4", "content_type": "video/mp4"},
        ).json()
        assert presign["upload_url"].startswith(service.url + "/storage/")
        put = http.put(
            presign["upload_url"], content=clip.read_bytes(), headers={"Content-Type": "video/mp4"}
        )
        assert put.status_code in (200, 201, 204), put.text
        est = http.post(
            "/pricing/estimate-video",
            headers=headers,
            json={"r2_key": presign["key"], "target_fps_options": [60, 120, 240]},
        )
        assert est.status_code == 200, est.text
        assert [o["charged_xeconds"] for o in est.json()["options"]] == [2, 4, 8]
        job = http.post(
            "/jobs",
            headers=headers,
            json={"r2_key": presign["key"], "project_id": presign["project_id"], "target_fps": 60},
        ).json()
        polled = http.get(f"/jobs/{job['job_id']}", headers=headers).json()
        assert polled["live_status"] == "queued"
        assert http.get("/me", headers=headers).json()["balance"]["free_xeconds"] == 28


def _replica_pids() -> list[int]:
    """The API replicas of this session's Ray (its raylet's children): any other Ray on the
    machine, a developer's or a leftover, has replicas of its own."""
    import psutil
    import ray

    node = ray._private.worker._global_node
    raylet = node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    pids = []
    for proc in psutil.Process(raylet).children(recursive=True):
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if title.startswith("ray::ServeReplica") and "ReframeAPI" in title:
            pids.append(proc.pid)
    return pids


@pytest.mark.ray
@pytest.mark.skipif(os.geteuid() != 0, reason="lowering niceness needs root or CAP_SYS_NICE")
def test_api_replicas_run_ahead_of_ray_worker_niceness(service: RunningService) -> None:
    from tests.test_sched import thread_niceness

    pids = _replica_pids()
    assert len(pids) == service.settings.api_replicas
    for pid in pids:
        # Ray starts workers at niceness 15, renders run at 19: the API asked for 0.
        assert set(thread_niceness(pid).values()) == {0}, pid


def test_a_local_ray_is_refused_when_its_job_agent_port_is_taken() -> None:
    from reframe.cli.serve import check_local_ray_ports
    from reframe.errors import Conflict

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(Conflict, match=f"port {port}.*another Ray.*RAY_ADDRESS=auto"):
            check_local_ray_ports(port)
    check_local_ray_ports(port)  # released: a Ray could start


@pytest.mark.ray
def test_each_scrape_adds_up_every_replica_and_replicas_log_json(
    service: RunningService, ray_runtime: ModuleType
) -> None:
    import json

    from prometheus_client.parser import text_string_to_metric_families

    metrics_dir = service.settings.resolved_metrics_dir
    with httpx.Client(base_url=service.url, timeout=30) as http:
        deadline = time.monotonic() + 30
        while http.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "Serve never answered /healthz"
            time.sleep(0.2)
        for i in range(30):
            resp = http.get("/pricing/config", headers={"X-Request-ID": f"serve-metrics-{i}"})
            # Ray Serve's Python proxy (this shared Ray's) appends its own copy of the header
            # after the app's; HAProxy, which `reframe serve` uses, does not.
            echoed = {v.strip() for v in resp.headers["x-request-id"].split(",")}
            assert echoed == {f"serve-metrics-{i}"}
        # Each replica writes its own files (prometheus-client multiprocess mode).
        writers = {p.name.split("_")[1] for p in metrics_dir.glob("histogram_*.db")}
        assert len(writers) == service.settings.api_replicas == len(_replica_pids())
        counts = []
        for _ in range(4):  # whichever replica answers, it counts every replica's requests
            text = http.get("/metrics").text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if (
                        sample.name == "reframe_http_requests_total"
                        and sample.labels["route"] == "/pricing/config"
                    ):
                        counts.append(sample.value)
    assert counts == [30.0] * 4

    logs_dir = Path(ray_runtime._private.worker._global_node.get_logs_dir_path())
    seen: set[str] = set()
    for path in logs_dir.glob("worker-*"):
        for line in path.read_text(errors="replace").splitlines():
            if '"serve-metrics-' not in line:
                continue
            record = json.loads(line)
            assert record["component"] == "api"
            assert record["logger"] == "reframe.access"
            assert record["route"] == "/pricing/config"
            seen.add(record["request_id"])
    assert seen == {f"serve-metrics-{i}" for i in range(30)}
