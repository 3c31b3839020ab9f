"""Render one accepted job on Ray: input from storage, output stored and registered.

`pipelines/render.py --job-id ID --attempt N` runs `render_stored_job` inside the job driver
(`reframe.jobs.driver.run_attempt`), which owns every status change: per-chunk progress moves
the job from `cold_start` to `processing`, a returned file id makes it `done`, a `ReframeError`
makes it `failed` with its refund, and anything else is left to the dispatcher's retry rules.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from reframe.errors import Conflict, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from reframe.config import Settings
    from reframe.db.models import File
    from reframe.engine.scenes import SceneSettings
    from reframe.pipeline.ray_pipeline import PipelineOptions, PipelineResult, ProgressCallback
    from reframe.storage import Storage
    from reframe.video.encode import EncodeOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobInput:
    job_id: str
    attempt: int
    account_id: str
    project_id: str
    input_key: str
    input_filename: str
    input_version: str | None
    target_fps: int
    watermarked: bool
    input_demuxer: str | None = None  # the container format the upload was probed as


def load_job(session: Session, job_id: str) -> JobInput:
    from reframe.db.models import Job

    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    if job.status.is_terminal:
        raise Conflict(f"job {job_id} is already {job.status.value}; nothing to render")
    return JobInput(
        job_id=job.id,
        attempt=job.attempts,
        account_id=job.account_id,
        project_id=job.project_id,
        input_key=job.input_file.storage_key,
        input_filename=job.input_file.filename,
        input_version=job.input_file.object_version,
        target_fps=job.target_fps,
        watermarked=job.watermarked,
        input_demuxer=(job.input_file.probe or {}).get("container"),
    )


def check_input_unchanged(storage: Storage, job: JobInput) -> None:
    """Refuse to render (or to deliver) bytes other than the ones this job was priced on.

    The upload URL stays valid for a while after the job is accepted; a client that PUT a
    longer clip under the same key would otherwise get it rendered for the shorter clip's price.
    """
    if job.input_version is None:  # priced before versions were recorded (migration 0004)
        return
    info = storage.head(job.input_key)
    if info is None or info.version != job.input_version:
        raise Conflict(
            "The uploaded file was replaced or removed after this job was priced, so it was "
            "not rendered and your xeconds were refunded. Upload the clip again and start a "
            "new job."
        )


def output_filename(input_filename: str, target_fps: int, suffix: str = ".mp4") -> str:
    """`clip.mov` at 60 fps -> `clip-60fps.mp4`."""
    stem = Path(input_filename).stem or "video"
    return f"{stem}-{target_fps}fps{suffix}"


def register_output(
    session: Session, job: JobInput, *, key: str, filename: str, size_bytes: int
) -> File:
    """The project's output-file row for a stored render (ready: we wrote and measured it)."""
    from reframe.db.models import File, FileRole, FileStatus

    file = File(
        project_id=job.project_id,
        account_id=job.account_id,
        role=FileRole.OUTPUT,
        status=FileStatus.READY,
        storage_key=key,
        filename=filename,
        content_type="video/mp4",
        size_bytes=size_bytes,
    )
    session.add(file)
    session.flush()
    return file


def render_stored_job(
    job_id: str,
    progress: ProgressCallback,
    *,
    settings: Settings,
    storage: Storage,
    sessions: sessionmaker[Session],
    options: PipelineOptions,
    encode: Callable[[bool], EncodeOptions],
    weights: Path | None = None,
    scenes: SceneSettings | None = None,
) -> tuple[str, PipelineResult]:
    """Render job `job_id` on the connected Ray cluster, store the output next to its project's
    input and register it as the project's output file; returns (file id, pipeline result).

    Status is not touched here: `reframe.jobs.driver.run_attempt` wraps this and settles the
    job (done, failed with refund, or left to the dispatcher's retry).
    """
    from reframe.pipeline.ray_pipeline import run_render
    from reframe.storage import new_object_key

    with sessions() as session:
        job = load_job(session, job_id)
    check_input_unchanged(storage, job)
    with tempfile.TemporaryDirectory(prefix="reframe-job-") as tmp:
        name = output_filename(job.input_filename, job.target_fps)
        local = Path(tmp) / name
        result = run_render(
            settings=settings,
            storage=storage,
            input_key=job.input_key,
            output=local,
            target_fps=Fraction(job.target_fps),
            encode=encode(job.watermarked),
            options=options,
            progress=progress,
            weights=weights,
            run_id=f"{job.job_id}-a{job.attempt}",
            scenes=scenes,
            demuxer=job.input_demuxer,
        )
        # Actors read the input while they render: a rewrite in the meantime could have mixed
        # two clips into one output.
        check_input_unchanged(storage, job)
        key = new_object_key(f"outputs/{job.account_id}/{job.project_id}", name)
        storage.upload_file(local, key, "video/mp4")
        size = local.stat().st_size
    try:
        with sessions() as session:
            file = register_output(session, job, key=key, filename=name, size_bytes=size)
            file_id = file.id
            session.commit()
    except BaseException:
        storage.delete(key)  # no row points at it; do not leave an orphan behind
        raise
    log.info("job %s: stored %s (%d bytes) as file %s", job_id, key, size, file_id)
    return file_id, result
