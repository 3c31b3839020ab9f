"""Jobs accepted through the API render on a Ray cluster of GPUs, proven with Ray's own test
facilities: a head with logical GPUs, and the fake multi-node autoscaler.

Each test runs the service as an operator does on a head node (`reframe serve` with
RAY_ADDRESS, or `serve deploy deploy/serve.yaml`) and drives it as a customer does (the
Python client: presign, PUT, estimate, job, poll, download). No GPU exists here, so the actors
Ray gives a logical GPU render on the CPU, which only REFRAME_RENDER_ALLOW_CPU_FALLBACK allows.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import yaml
from reframe_client import JobStatus, Reframe

from tests.fixtures.cluster import (
    BIN,
    ROOT,
    RayHead,
    ReframeService,
    create_account,
    free_port,
    ray_head,
    reframe_service,
    service_env,
)
from tests.fixtures.media import make_clip
from tests.fixtures.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY

pytestmark = [pytest.mark.ray, pytest.mark.weights, pytest.mark.slow]

# Keyframes every 12 frames and 12-frame chunks: 96 source frames make 8 chunks.
GOP = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}


def render_settings(rife_weights: Path) -> dict[str, str]:
    """What every service here renders with: lossless (to compare frames), small chunks."""
    return {
        "rife_weights": str(rife_weights),
        "render_allow_cpu_fallback": "true",
        "render_crf": "0",
        "render_preset": "ultrafast",
        "render_chunk_frames": "12",
        "dispatch_poll_sec": "0.2",
        "api_replicas": "1",
        "process_priority": "false",
    }


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def gpu_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    """One machine advertising two GPUs (logical: there is no CUDA here)."""
    with ray_head(tmp_path_factory.mktemp("gpu-head"), num_cpus=4, num_gpus=2) as head:
        yield head


@pytest.fixture
def gpu_service(
    gpu_head: RayHead, tmp_path_factory: pytest.TempPathFactory, rife_weights: Path
) -> Iterator[ReframeService]:
    # Stopped after its test: while it served, the `serve deploy` test's requests were at
    # times answered by this service (a key it had never seen: 401), so two Serve
    # applications never run side by side here.
    work = tmp_path_factory.mktemp("gpu-service")
    env = service_env(gpu_head, work, **render_settings(rife_weights))
    with reframe_service(env, work / "service.log") as service:
        yield service


def render_through_the_api(
    url: str, key: str, clip: Path, output: Path
) -> tuple[Any, list[tuple[str, int | None]]]:
    """The customer's whole workflow with the Python client; returns (final job, polls)."""
    seen: list[tuple[str, int | None]] = []
    client = Reframe(key, url, poll_interval=0.2)
    result = client.render(
        clip,
        60,
        output,
        on_progress=lambda job: seen.append((job.live_status.value, job.frames_done)),
        timeout=900,
    )
    return result.job, seen


def chunk_timings(logs: str) -> list[dict[str, Any]]:
    """The render driver's per-chunk report: which actor rendered it, from when to when."""
    found = re.search(r"chunks: (\[.*\])\s*$", logs, flags=re.M)
    assert found is not None, logs[-3000:]
    chunks: list[dict[str, Any]] = json.loads(found.group(1))
    return chunks


def test_a_job_renders_on_two_gpu_actors_at_once_with_live_progress(
    gpu_head: RayHead, gpu_service: ReframeService, tmp_path: Path
) -> None:
    clip = make_clip(
        tmp_path / "clip.mp4", frames=96, fps=24, width=256, height=144, audio=True, options=GOP
    )
    key = gpu_service.create_account("gpus@example.com")
    job, seen = render_through_the_api(gpu_service.url, key, clip, tmp_path / "smooth.mp4")
    assert job.live_status is JobStatus.DONE, gpu_service.log_tail()

    # The dispatcher saw the GPUs and asked for them; processing began with the first model.
    messages = [(e.status.value, e.message or "") for e in job.events]
    cold = [m for s, m in messages if s == "cold_start"]
    assert cold, messages
    assert "up to 2 interpolator actors x 1 GPU" in cold[0], messages
    assert "2 GPUs now" in cold[0]
    assert any(
        s == "processing" and "first interpolator has its model loaded" in m for s, m in messages
    ), messages

    # Polls saw frames_done rise while the render ran, not only its end.
    rising = sorted({f for s, f in seen if s == "processing" and f is not None})
    assert len([f for f in rising if f < job.frames_total]) >= 3, seen

    # Eight chunks on two actors, and the two actors worked at the same time.
    chunks = chunk_timings(gpu_head.job_logs(f"reframe-{job.job_id}-a1"))
    assert len(chunks) >= 3
    actors = {c["actor"] for c in chunks}
    assert len(actors) == 2, chunks
    overlapping = [
        (a["chunk"], b["chunk"])
        for a in chunks
        for b in chunks
        if a["actor"] != b["actor"]
        and a["started_at"] < b["finished_at"]
        and b["started_at"] < a["finished_at"]
    ]
    assert overlapping, chunks

    # Frame for frame what one process renders alone (lossless, same engine settings).
    single = tmp_path / "single.mp4"
    subprocess.run(
        [
            str(BIN / "reframe"),
            "render",
            str(clip),
            "-o",
            str(single),
            "--target-fps",
            "60",
            "--crf",
            "0",
            "--preset",
            "ultrafast",
            "--threads",
            "1",
            "--watermark",  # free credits: the service watermarks too
            "--quiet",
        ],
        env={**gpu_service.env, "RAY_ADDRESS": ""},
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    ours, theirs = decoded(tmp_path / "smooth.mp4"), decoded(single)
    assert len(ours) == len(theirs) == job.frames_total == 240
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


@pytest.fixture
def fresh_gpu_head(tmp_path: Path) -> Iterator[RayHead]:
    """A head of its own: Serve, once shut down on a cluster, does not come back cleanly for
    another `serve deploy` there."""
    with ray_head(tmp_path / "head", num_cpus=4, num_gpus=2) as head:
        yield head


def test_serve_deploy_of_the_shipped_config_renders_jobs(
    fresh_gpu_head: RayHead, tmp_path: Path, rife_weights: Path
) -> None:
    """`serve deploy deploy/serve.yaml`, as the README shows it, brings the dispatcher with the
    API: a job accepted through it renders. (Settings reach the replicas through their
    environment here, as on a real cluster.)"""
    gpu_head = fresh_gpu_head
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(gpu_head, tmp_path, public_base_url=url, **render_settings(rife_weights))
    config = yaml.safe_load((ROOT / "deploy" / "serve.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    # The replicas' settings, as cluster.yaml's env file gives every node its REFRAME_*.
    (app,) = config["applications"]
    app["runtime_env"] = {"env_vars": {k: v for k, v in env.items() if k.startswith("REFRAME_")}}
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert gpu_head.dashboard_url is not None
    subprocess.run(
        [str(BIN / "serve"), "deploy", str(config_path), "--address", gpu_head.dashboard_url],
        env=gpu_head.env,
        check=True,
        timeout=300,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the deployed application never answered"
            time.sleep(1)
        key = create_account(env, "deployed@example.com")
        clip = make_clip(tmp_path / "clip.mp4", frames=24, width=96, height=64, audio=True)
        job, _ = render_through_the_api(url, key, clip, tmp_path / "out.mp4")
        assert job.live_status is JobStatus.DONE
        assert len(decoded(tmp_path / "out.mp4")) == job.frames_total == 60
    finally:
        subprocess.run(
            [str(BIN / "serve"), "shutdown", "-y", "--address", gpu_head.dashboard_url],
            env=gpu_head.env,
            check=False,
            timeout=120,
        )


@pytest.fixture
def autoscaling_head(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> Iterator[tuple[RayHead, dict[str, str]]]:
    """A CPU head whose autoscaler can add up to two (fake) GPU nodes, none at start. Storage is
    S3 (the loopback server): actors on other nodes cannot read the head's disk."""
    from reframe.storage.s3 import S3Storage

    S3Storage(s3_bucket, s3_endpoint, S3_REGION, S3_ACCESS_KEY, S3_SECRET_KEY).ensure_bucket()
    storage = {
        "storage_backend": "s3",
        "s3_bucket": s3_bucket,
        "s3_endpoint_url": s3_endpoint,
        "s3_region": S3_REGION,
        "s3_access_key_id": S3_ACCESS_KEY,
        "s3_secret_access_key": S3_SECRET_KEY,
    }
    # Every node's environment carries the storage credentials (cluster.yaml's env file), so
    # the actors on autoscaled nodes build their S3 client there.
    node_env = {f"REFRAME_{k.upper()}": v for k, v in storage.items()}
    workers = {
        "gpu": {
            "resources": {"CPU": 2, "GPU": 1, "object_store_memory": 256 * 1024 * 1024},
            "node_config": {},
            "min_workers": 0,
            "max_workers": 2,
        }
    }
    with ray_head(
        tmp_path, num_cpus=2, num_gpus=0, autoscaling_workers=workers, extra_env=node_env
    ) as head:
        yield head, storage


# Run with the suite's first tests, before the session's shared Ray and the other Serve tests:
# after them, in two full runs, its service answered with another app's database (401 for a
# key it had just created) although it passes alone and after this module; the cause is not
# found yet (see the closing note of 2026-12-03).
@pytest.mark.own_ray
def test_autoscaled_gpu_nodes_come_render_on_s3_and_go(
    autoscaling_head: tuple[RayHead, dict[str, str]], tmp_path: Path, rife_weights: Path
) -> None:
    head, storage = autoscaling_head
    # The head alone; the dashboard lists it once it has its first report.
    deadline = time.monotonic() + 60
    while (alive := head.alive_nodes()) != 1:
        assert alive == 0, f"{alive} nodes before any render"
        assert time.monotonic() < deadline, "the head never showed up in the state API"
        time.sleep(1)
    assert head.autoscaling_config is not None

    # Local storage on a cluster that can grow is refused, with what to set instead.
    local = service_env(head, tmp_path / "local", autoscaler_config=str(head.autoscaling_config))
    refused = subprocess.run(
        [str(BIN / "reframe"), "serve", "--port", str(free_port())],
        env=local,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert refused.returncode != 0
    assert "REFRAME_STORAGE_BACKEND=s3" in refused.stdout + refused.stderr

    env = service_env(
        head,
        tmp_path,
        autoscaler_config=str(head.autoscaling_config),
        **storage,
        **render_settings(rife_weights),
    )
    nodes: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            # A dashboard too busy to answer this second is asked again the next.
            with contextlib.suppress(Exception):
                nodes.append(head.alive_nodes())

    with reframe_service(env, tmp_path / "service.log") as service:
        key = service.create_account("autoscale@example.com")
        clip = make_clip(
            tmp_path / "clip.mp4", frames=48, width=128, height=96, audio=True, options=GOP
        )
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            job, _ = render_through_the_api(service.url, key, clip, tmp_path / "out.mp4")
        finally:
            stop.set()
            watcher.join(timeout=30)
        assert job.live_status is JobStatus.DONE, service.log_tail()
        with av.open(str(tmp_path / "out.mp4")) as out:
            assert out.streams.video[0].average_rate == Fraction(60)
            assert sum(1 for _ in out.decode(video=0)) == job.frames_total == 120
        # The render's demand for GPUs brought up worker nodes: the head has none.
        assert max(nodes) >= 2, nodes
        cold = [e.message or "" for e in job.events if e.status.value == "cold_start"]
        assert "0 GPUs now, up to 2 with autoscaling" in cold[0], cold

        # With nothing left to do they are removed after the idle timeout (6 s here).
        deadline = time.monotonic() + 180
        while head.alive_nodes() > 1:
            assert time.monotonic() < deadline, "the idle GPU nodes were never removed"
            time.sleep(2)
