"""A failure at each stage of a real render (probe, decode, model, encode, store) ends the job
`failed` with exactly one refund and a ledger that still sums to the balance (PostgreSQL, Ray).

Each failure is a real one: garbage bytes, an object corrupted between planning and decoding,
a corrupt weights file, an encoder preset libx264 refuses, a store that cannot take the output.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import func, select

from reframe.config import Settings
from reframe.db.models import Job, JobStatus, LedgerEntry, LedgerReason
from reframe.jobs.dispatcher import Dispatcher
from reframe.jobs.driver import ProgressFn, render_stored_job, run_attempt
from reframe.jobs.launchers import SubprocessLauncher
from reframe.jobs.lifecycle import JobLifecycle
from reframe.options import RenderOptions
from reframe.pipeline.actors import WorkerConfig
from reframe.services import ledger
from reframe.storage import build_storage
from reframe.storage.base import Storage
from tests.fixtures.db import TestDatabase
from tests.fixtures.jobs import accept_uploaded_job
from tests.fixtures.media import make_clip

pytestmark = [pytest.mark.postgres, pytest.mark.ray, pytest.mark.weights, pytest.mark.slow]


class _Wrapped:
    """A real storage with one operation replaced, to fail or to lie at a chosen moment."""

    def __init__(self, inner: Storage, **overrides: Callable[..., Any]) -> None:
        self._inner = inner
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._inner, name)


def accept_and_claim(db: TestDatabase, settings: Settings, clip: Path) -> tuple[str, str]:
    made = accept_uploaded_job(db, settings, clip, claim=True)
    return made.job_id, made.account_id


@pytest.fixture
def stage_settings(postgres_db: TestDatabase, tmp_path: Path, rife_weights: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", database_url=postgres_db.url, rife_weights=rife_weights
    )


def run_stage(
    stage: str, db: TestDatabase, settings: Settings, tmp_path: Path, rife_weights: Path
) -> tuple[str, str]:
    """Render with `stage` broken; returns (job id, who settled it: driver or dispatcher)."""
    clip = make_clip(tmp_path / "clip.mp4", frames=16, width=64, height=48)
    job_id, _ = accept_and_claim(db, settings, clip)
    storage: Storage = build_storage(settings)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        # The render reads the job's pinned copy of the upload (issue 12), so that is the
        # object the stages below break.
        assert job.input_key is not None
        stored = settings.resolved_storage_dir / job.input_key
    weights = rife_weights
    options = RenderOptions(crf=23, preset="ultrafast", chunk_frames=8, actors=1)
    if stage == "probe":
        stored.write_bytes(b"\x00not a video at all\x00" * 64)
    elif stage == "decode":
        # The driver probes and plans from an intact copy; the object the actors decode was
        # overwritten after that (corrupted in storage between planning and decoding).
        intact = tmp_path / "intact.mp4"
        shutil.copy(stored, intact)
        stored.write_bytes(b"\x00" * stored.stat().st_size)

        @contextmanager
        def local_path(key: str, *, pin: object = None) -> Iterator[Path]:
            yield intact

        storage = _Wrapped(storage, local_path=local_path)  # type: ignore[assignment]
    if stage in ("probe", "decode"):
        # These stages break the bytes under the input's key; pin the broken object, so the
        # render meets it rather than the check for inputs changed after pricing.
        data = stored.read_bytes()
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.input_sha256 = hashlib.sha256(data).hexdigest()
            job.input_size_bytes = len(data)
            session.commit()
    if stage == "model":
        weights = tmp_path / "corrupt-flownet.pkl"
        weights.write_bytes(b"this is not a state dict")
    elif stage == "encode":
        options = options.replace(preset="no-such-preset")
    elif stage == "store":

        def upload_file(path: Path, key: str, content_type: str) -> None:
            raise OSError(28, "No space left on device", key)

        storage = _Wrapped(storage, upload_file=upload_file)  # type: ignore[assignment]

    def render(job: Job, progress: ProgressFn) -> str:
        file_id, _ = render_stored_job(
            job,
            progress,
            storage=storage,
            sessions=db.sessionmaker,
            worker=WorkerConfig.from_settings(
                settings.model_copy(update={"rife_weights": weights})
            ),
            options=options,
        )
        return file_id

    try:
        code = run_attempt(settings, job_id, 1, render)
    except Exception as exc:
        # Not a ReframeError: the driver process would exit non-zero, and the dispatcher
        # settles the attempt. With no attempts left that is fail + refund.
        last_rites = Dispatcher(
            db.sessionmaker, SubprocessLauncher(settings), capacity=1, max_attempts=1
        )
        settled = last_rites._lost(job_id, 1, f"the render process exited with 1 ({exc!r})")
        return (job_id, "dispatcher") if settled else (job_id, "nobody")
    assert code == 1
    return job_id, "driver"


@pytest.mark.parametrize("stage", ["probe", "decode", "model", "encode", "store"])
def test_a_failure_at_each_stage_refunds_exactly_once(
    stage: str,
    ray_runtime: ModuleType,
    postgres_db: TestDatabase,
    stage_settings: Settings,
    tmp_path: Path,
    rife_weights: Path,
) -> None:
    job_id, settled_by = run_stage(stage, postgres_db, stage_settings, tmp_path, rife_weights)
    print(f"{stage}: settled by the {settled_by}")
    with postgres_db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.FAILED, stage
        assert job.error, stage
        assert job.refunded_xeconds == job.charged_xeconds
        refund_rows = session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.job_id == job_id, LedgerEntry.reason == LedgerReason.JOB_REFUND
            )
        ).all()
        assert [r.delta for r in refund_rows] == [job.charged_xeconds]
        total = session.scalar(
            select(func.sum(LedgerEntry.delta)).where(LedgerEntry.account_id == job.account_id)
        )
        assert ledger.balance(session, job.account_id).total == total == 30
    # A late report of the same failure (the dispatcher noticing the driver exit) adds nothing.
    assert JobLifecycle(postgres_db.sessionmaker).fail(job_id, "late").changed is False
