"""The render driver: one attempt of one accepted job (`pipelines/render.py --job-id ID`).

`run_attempt` loads the job once, hands the renderer a progress callback, and settles the job:
- the renderer returns the output file's id -> `done`;
- it raises a `ReframeError` (bad media, missing weights, a render error) -> `failed` with that
  message and a refund: trying again would fail the same way;
- anything else (a Ray actor died, the node went away, a bug) propagates, the process exits
  non-zero, and the dispatcher decides between a retry and fail+refund.
An attempt that is no longer the job's current one does nothing: a retry has replaced it.

`render_stored_job` is the real renderer: the job's input from storage through the Ray
pipeline, the output stored next to the project's input and registered as its output file.
Status is never touched there; `run_attempt` owns every change (through the job lifecycle).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, joinedload, sessionmaker

from reframe.db import make_engine, make_sessionmaker
from reframe.db.models import File, FileStatus, Job, JobStatus
from reframe.errors import Conflict, NotFound, ObjectChanged, ReframeError, RenderError, TooLarge
from reframe.jobs.choices import RenderChoices
from reframe.jobs.events import event_bus
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.progress import progress_store
from reframe.pipeline.ray_pipeline import run_render
from reframe.services import previews, uploads
from reframe.storage import build_storage, new_object_key
from reframe.storage.base import ObjectPin

if TYPE_CHECKING:
    from reframe.config import Settings
    from reframe.options import RenderOptions
    from reframe.pipeline.actors import WorkerConfig
    from reframe.pipeline.ray_pipeline import PipelineResult
    from reframe.storage import Storage

log = logging.getLogger(__name__)

# The pipeline's callback: (frames done, frames total, chunks done, chunks total).
ProgressFn = Callable[[int, int, int, int], None]


class AttemptReporter:
    """What a renderer tells the job lifecycle about one attempt: called with the pipeline's
    progress as frames are written, and `ready()` once the first actor has the model loaded
    (the job then shows `processing`: the render is under way, not still starting)."""

    def __init__(self, lifecycle: JobLifecycle, job_id: str, attempt: int) -> None:
        self._lifecycle = lifecycle
        self._job_id = job_id
        self._attempt = attempt
        self._track = lifecycle.tracker(job_id, attempt)

    def __call__(self, frames_done: int, frames_total: int, *_chunks: int) -> None:
        self._track(frames_done, frames_total)

    def ready(self) -> None:
        self._lifecycle.advance(
            self._job_id,
            JobStatus.PROCESSING,
            attempt=self._attempt,
            message="rendering: the first interpolator has its model loaded",
        )


# Renders a loaded job (detached, with its input file) and returns the output file's id.
Renderer = Callable[[Job, AttemptReporter], str]


def _reframe_cause(exc: BaseException) -> ReframeError | None:
    """The `ReframeError` behind `exc`, also when Ray Data wrapped one raised in an actor.

    Ray re-raises an actor's exception as a RayTaskError that keeps the original in `.cause`;
    its "as instance of cause" subclass passes isinstance checks without ever running the
    original __init__, so the original object is the one to read.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)
        if isinstance(inner, ReframeError):
            return inner
        if isinstance(current, ReframeError) and hasattr(current, "message"):
            return current
        current = current.__cause__ or current.__context__
    return None


def customer_message(error: ReframeError) -> str:
    """What the job's owner reads. Problems with their input or the render say what happened;
    server-side faults (missing weights, storage credentials) are the operator's to fix and
    can name server paths, so the owner gets a plain sentence and the log keeps the rest."""
    if isinstance(error, ObjectChanged):
        # Raised by a storage read (an actor's, say): its message names keys and hashes.
        return INPUT_CHANGED
    if error.status_code < 500 or isinstance(error, RenderError):
        return error.message
    return (
        "The render failed because of a problem on our side; the operator has the details. "
        "Your xeconds were refunded."
    )


def load_job(sessions: sessionmaker[Session], job_id: str) -> Job | None:
    """The job with its input file, detached, so the render can read it without a session."""
    with sessions() as session:
        job = session.get(Job, job_id, options=[joinedload(Job.input_file)])
        if job is not None:
            session.expunge_all()
        return job


def run_attempt(
    settings: Settings,
    job_id: str,
    attempt: int | None,
    render: Renderer,
    *,
    sessions: sessionmaker[Session] | None = None,
) -> int:
    """Run one attempt; returns the process exit code (0 done or nothing to do, 1 failed).

    `attempt` None (a render started by hand) means the job's current attempt. `sessions`
    defaults to a database connection of its own, closed at the end.
    """
    engine = make_engine(settings.resolved_database_url) if sessions is None else None
    try:
        if sessions is None:
            assert engine is not None
            sessions = make_sessionmaker(engine)
        life = JobLifecycle(sessions, bus=event_bus(settings), progress=progress_store(settings))
        job = load_job(sessions, job_id)
        if job is None:
            raise ReframeError(f"job {job_id} does not exist in the database")
        if attempt is None:
            attempt = job.attempts
        if job.status.is_terminal or job.attempts != attempt:
            return 0
        try:
            output_file_id = render(job, AttemptReporter(life, job_id, attempt))
        except Exception as exc:
            cause = _reframe_cause(exc)
            if cause is None:
                raise
            if customer_message(cause) != cause.message:
                log.error("job %s attempt %d failed: %s", job_id, attempt, cause.message)
            life.fail(job_id, customer_message(cause), attempt=attempt)
            return 1
        if not life.complete(job_id, output_file_id, attempt=attempt):
            # The job ended otherwise while it rendered (cancelled, failed by the operator) or
            # a newer attempt took over: the lifecycle refused the output, so its bytes go.
            discard_output(settings, sessions, output_file_id)
        return 0
    finally:
        if engine is not None:
            engine.dispose()


def discard_output(
    settings: Settings, sessions: sessionmaker[Session], output_file_id: str
) -> None:
    """Delete the stored bytes of an output its job refused (the row says why)."""
    with sessions() as session:
        file = session.get(File, output_file_id)
        key = file.storage_key if file is not None and file.status is FileStatus.REJECTED else None
    if key is None:
        return
    try:
        build_storage(settings).delete(key)
    except Exception:  # the row is already rejected; a leftover object is only space
        log.exception("could not delete the refused output %s", key)


INPUT_CHANGED = (
    "The uploaded file was replaced or removed after this job was priced, so it was not "
    "rendered and your xeconds were refunded. Upload the clip again and start a new job."
)


def job_input_pin(job: Job) -> ObjectPin | None:
    """The object `job` was charged on, as its row pinned it (None before migration 0006)."""
    if job.input_key is None or job.input_sha256 is None or job.input_size_bytes is None:
        return None
    return ObjectPin(
        key=job.input_key,
        sha256=job.input_sha256,
        size=job.input_size_bytes,
        etag=job.input_version,
        version_id=job.input_version_id,
    )


@contextmanager
def pinned_input(storage: Storage, job: Job) -> Iterator[ObjectPin]:
    """The exact object this attempt renders.

    Jobs pin it at acceptance. One accepted before pins existed uses its input's pin when the
    input has one (taken from the version that was priced), else the version it was priced on
    is copied now to a key of this attempt's own, removed afterwards; another version is
    refused, before any work.
    """
    pin = job_input_pin(job)
    if pin is not None:
        yield pin
        return
    file = job.input_file
    if file.pinned_key is not None:
        yield uploads.input_pin(file)
        return
    try:
        with storage.pin(
            file.storage_key,
            f"pipeline/{job.id}-a{job.attempts}/input",
            content_type=file.content_type,
            max_bytes=file.size_bytes or 1,
            expect_version=file.object_version,
        ) as copy:
            pin = copy.pin
    except (ObjectChanged, NotFound, TooLarge) as exc:
        raise Conflict(INPUT_CHANGED) from exc
    try:
        yield pin
    finally:
        storage.delete(pin.key)


def output_filename(
    input_filename: str, target_fps: int, suffix: str = ".mp4", playback_fps: int | None = None
) -> str:
    """`clip.mov` at 60 fps -> `clip-60fps.mp4`; slow motion, 240 fps played at 30:
    `clip-240fps-at-30fps.mp4`."""
    stem = Path(input_filename).stem or "video"
    slow = f"-at-{playback_fps}fps" if playback_fps and playback_fps != target_fps else ""
    return f"{stem}-{target_fps}fps{slow}{suffix}"


def render_stored_job(
    job: Job,
    progress: ProgressFn,
    *,
    on_ready: Callable[[], None] | None = None,
    storage: Storage,
    sessions: sessionmaker[Session],
    worker: WorkerConfig,
    options: RenderOptions,
) -> tuple[str, PipelineResult]:
    """Render `job` on the connected Ray cluster, store the output next to its project's input
    and register it as the project's output file; returns (file id, pipeline result)."""
    with (
        pinned_input(storage, job) as pin,
        tempfile.TemporaryDirectory(prefix="reframe-job-") as tmp,
    ):
        # The customer's output and slow-motion choices; the service's encoder fills the gaps.
        choices = RenderChoices.from_json(job.render_options)
        fmt = choices.resolve(
            job.target_fps, default_codec=options.codec, default_crf=options.crf
        ).format
        playback = choices.playback_fps if choices.slow_motion(job.target_fps) else None
        name = output_filename(job.input_file.filename, job.target_fps, fmt.suffix, playback)
        # A preview renders only the clip's first seconds (render_options["preview"]).
        preview_seconds = previews.preview_seconds_of(job.render_options)
        if preview_seconds is not None:
            name = f"{Path(name).stem}-preview{Path(name).suffix}"
        local = Path(tmp) / name
        probe = job.input_probe if job.input_probe is not None else job.input_file.probe
        try:
            # Every read of the input (the plan here, each actor's) names this pin: other
            # bytes are refused when they are opened, before a frame is made from them.
            result = run_render(
                storage=storage,
                worker=worker,
                input_key=pin.key,
                input_pin=pin,
                output=local,
                target_fps=Fraction(job.target_fps),
                options=options,
                watermark=job.watermarked,
                progress=progress,
                on_ready=on_ready,
                run_id=f"{job.id}-a{job.attempts}",
                # The container the upload was probed as: every open of it insists on that.
                demuxer=(probe or {}).get("container"),
                max_seconds=preview_seconds,
                output_format=fmt,
                playback_fps=Fraction(playback) if playback else None,
            )
        except ObjectChanged as exc:
            raise Conflict(INPUT_CHANGED) from exc
        key = new_object_key(f"outputs/{job.account_id}/{job.project_id}", name)
        storage.upload_file(local, key, fmt.content_type)
        size = local.stat().st_size
    try:
        with sessions() as session:
            file = uploads.register_output(
                session, job, key=key, filename=name, size_bytes=size, content_type=fmt.content_type
            )
            file_id = file.id
            session.commit()
    except BaseException:
        storage.delete(key)  # no row points at it; do not leave an orphan behind
        raise
    log.info("job %s: stored %s (%d bytes) as file %s", job.id, key, size, file_id)
    return file_id, result
