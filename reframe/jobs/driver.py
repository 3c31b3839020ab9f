"""The render driver's side of the lifecycle, for `pipelines/render.py --job-id ID --attempt N`.

`run_attempt` loads the job, hands the renderer a progress callback, and settles the job:
- the renderer returns the output file's id -> `done`;
- it raises a `ReframeError` (bad media, missing weights, a render error) -> `failed` with that
  message and a refund: trying again would fail the same way;
- anything else (a Ray actor died, the node went away, a bug) propagates, the process exits
  non-zero, and the dispatcher decides between a retry and fail+refund.
An attempt that is no longer the job's current one does nothing: a retry has replaced it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from reframe.db import make_engine, make_sessionmaker
from reframe.db.models import Job
from reframe.errors import ReframeError, RenderError
from reframe.jobs.events import event_bus
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.progress import progress_store

if TYPE_CHECKING:
    from reframe.config import Settings

log = logging.getLogger(__name__)

# The pipeline's callback: (frames done, frames total, chunks done, chunks total).
ProgressFn = Callable[[int, int, int, int], None]
Renderer = Callable[[Job, ProgressFn], str]


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
    if error.status_code < 500 or isinstance(error, RenderError):
        return error.message
    return (
        "The render failed because of a problem on our side; the operator has the details. "
        "Your xeconds were refunded."
    )


def run_attempt(settings: Settings, job_id: str, attempt: int, render: Renderer) -> int:
    """Run one attempt; returns the process exit code (0 done, 1 failed for good)."""
    engine = make_engine(settings.resolved_database_url)
    try:
        sessions = make_sessionmaker(engine)
        life = JobLifecycle(sessions, bus=event_bus(settings), progress=progress_store(settings))
        with sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise ReframeError(f"job {job_id} does not exist in {engine.url!r}")
            session.expunge(job)
        if job.status.is_terminal or job.attempts != attempt:
            return 0
        report = life.tracker(job_id, attempt)

        def progress(frames_done: int, frames_total: int, *_chunks: int) -> None:
            report(frames_done, frames_total)

        try:
            output_file_id = render(job, progress)
        except Exception as exc:
            cause = _reframe_cause(exc)
            if cause is None:
                raise
            if customer_message(cause) != cause.message:
                log.error("job %s attempt %d failed: %s", job_id, attempt, cause.message)
            life.fail(job_id, customer_message(cause), attempt=attempt)
            return 1
        life.complete(job_id, output_file_id, attempt=attempt)
        return 0
    finally:
        engine.dispose()
