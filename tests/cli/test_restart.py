"""Stopping `reframe serve` in the middle of a render and starting it again, as an operator
does on an upgrade: SIGTERM stops it quickly, nothing it started lingers, and the job still
ends exactly once, `done` and charged once (or `failed` and refunded once), never lost."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
import psutil
import pytest
from reframe_client import Reframe

from tests.fixtures.cluster import ROOT, reframe_service
from tests.fixtures.media import make_clip

pytestmark = [pytest.mark.slow, pytest.mark.weights, pytest.mark.ray, pytest.mark.own_ray]


def _local_env(tmp_path: Path, rife_weights: Path) -> dict[str, str]:
    """A first user's environment: embedded defaults and a local Ray the service starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFRAME_", "RAY_"))}
    env.update(
        REFRAME_DATA_DIR=str(tmp_path / "var"),
        REFRAME_RIFE_WEIGHTS=str(rife_weights),
        # Small chunks, so the render reports frames well before it ends.
        REFRAME_RENDER_CHUNK_FRAMES="8",
        PYTHONPATH=str(ROOT),
    )
    return env


def _ledger(db: Path, job_id: str) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT reason, delta FROM ledger_entries WHERE job_id = ?",
            (job_id,),
        ).fetchall()
    return [(str(reason), int(amount)) for reason, amount in rows]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_a_service_stopped_mid_render_and_started_again_ends_the_job_exactly_once(
    tmp_path: Path, rife_weights: Path
) -> None:
    env = _local_env(tmp_path, rife_weights)
    clip = make_clip(tmp_path / "clip.mp4", frames=96, fps=24, width=256, height=144)
    with reframe_service(env, tmp_path / "first.log") as first:
        key = first.create_account("restart@example.com")
        client = Reframe(key, first.url)
        before = client.me().balance.total_xeconds
        upload = client.upload(clip)
        client.estimate_video(upload.key, [60])
        created = client.create_job(upload.key, upload.project_id, 60)
        job_id, price = created.job_id, created.charged_xeconds
        assert before - client.me().balance.total_xeconds == price > 0
        # Stop once the render is really running: past its cold start, frames coming out.
        deadline = time.monotonic() + 300
        while True:
            job = client.get_job(job_id)
            if job.live_status.value == "processing" and (job.frames_done or 0) > 0:
                break
            assert job.live_status.value not in ("done", "failed"), job
            assert time.monotonic() < deadline, first.log_tail()
            time.sleep(0.2)
        client.close()
        children = _descendants(first.proc.pid)
        started = time.monotonic()
        assert first.stop(timeout=60) == 0, first.log_tail()
        stopped_in = time.monotonic() - started
        # What it started (Ray, Serve's HAProxy, the render's Ray job) went with it.
        time.sleep(1.0)
        left = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [p.cmdline()[:3] for p in left]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{first.url}/healthz", timeout=2)
    # Seen here: about 6 s, inside the 10 s operators are promised (README).
    assert stopped_in < 30, stopped_in
    print(f"SIGTERM to exit during a render: {stopped_in:.1f} s")

    with reframe_service(env, tmp_path / "second.log") as second:
        client = Reframe(key, second.url)
        deadline = time.monotonic() + 600
        while (job := client.get_job(job_id)).live_status.value not in ("done", "failed"):
            assert time.monotonic() < deadline, second.log_tail()
            time.sleep(0.5)
        balance = client.me().balance.total_xeconds
        client.close()
    ledger = _ledger(tmp_path / "var" / "reframe.db", job_id)
    charges = [a for r, a in ledger if r == "job_charge"]
    refunds = [a for r, a in ledger if r == "job_refund"]
    assert charges == [-price], ledger
    if job.live_status.value == "done":
        assert refunds == [], ledger
        assert balance == before - price
        assert job.frames_done == job.frames_total == 240
    else:
        assert refunds == [price], (ledger, job)
        assert balance == before
