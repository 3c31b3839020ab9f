"""The dispatcher as a Serve deployment, rendering a real job with the real pipeline, surviving
a kill -9 of its own process (PostgreSQL, Ray, RIFE weights)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import select

from reframe.config import Settings
from reframe.db.models import File, Job, JobEvent, JobStatus, LedgerEntry, LedgerReason
from reframe.serving import start_dispatcher
from tests.fixtures.db import TestDatabase
from tests.fixtures.jobs import accept_uploaded_job
from tests.fixtures.media import make_clip


def accept(db: TestDatabase, settings: Settings, clip: Path) -> str:
    return accept_uploaded_job(db, settings, clip).job_id


def status_of(db: TestDatabase, job_id: str) -> tuple[JobStatus, int, str | None]:
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status, job.attempts, job.lease_owner


@pytest.mark.postgres
@pytest.mark.ray
@pytest.mark.weights
@pytest.mark.slow
def test_the_dispatcher_replica_survives_kill_9_and_the_job_still_renders(
    ray_runtime: ModuleType, postgres_db: TestDatabase, tmp_path: Path, rife_weights: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_db.url,
        rife_weights=rife_weights,
        lease_sec=3.0,
        heartbeat_sec=0.5,
        dispatch_poll_sec=0.2,
        max_attempts=2,
        max_concurrent_renders=1,
    )
    job_id = accept(postgres_db, settings, make_clip(tmp_path / "clip.mp4", frames=16))
    handle, stop = start_dispatcher(settings, launcher="subprocess")
    try:
        first = handle.status.remote().result(timeout_s=60)
        deadline = time.monotonic() + 120
        while status_of(postgres_db, job_id)[0] is JobStatus.QUEUED:
            assert time.monotonic() < deadline, "the dispatcher never claimed the job"
            time.sleep(0.2)
        assert status_of(postgres_db, job_id)[2] == first["owner"]
        os.kill(first["pid"], signal.SIGKILL)
        # Serve replaces the replica; the new one has a new owner id and settles the job.
        second = first
        restart_deadline = time.monotonic() + 120
        while second["pid"] == first["pid"]:
            assert time.monotonic() < restart_deadline, "Serve did not replace the dispatcher"
            try:
                second = handle.status.remote().result(timeout_s=30)
            except Exception:  # still being replaced
                time.sleep(0.5)
        assert second["pid"] != first["pid"]
        assert second["owner"] != first["owner"]
        deadline = time.monotonic() + 300
        while not status_of(postgres_db, job_id)[0].is_terminal:
            assert time.monotonic() < deadline, status_of(postgres_db, job_id)
            time.sleep(0.5)
    finally:
        stop()
    status, attempts, _ = status_of(postgres_db, job_id)
    with postgres_db.session() as session:
        events = [
            (e.status.value, e.message)
            for e in session.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            )
        ]
        job = session.get(Job, job_id)
        assert job is not None
        output = session.get(File, job.output_file_id) if job.output_file_id else None
        refunds = session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.job_id == job_id, LedgerEntry.reason == LedgerReason.JOB_REFUND
            )
        ).all()
    assert status is JobStatus.DONE, events
    assert 1 <= attempts <= 2
    assert output is not None
    assert refunds == []
    print(events)
