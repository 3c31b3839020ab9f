"""Command line of the Ray render driver (`pipelines/render.py`, and `reframe render --ray`).

Two modes: `--job-id ID [--attempt N]` renders an accepted job (input and output in storage,
status and refunds through the job driver, reframe.jobs.driver); `--input FILE --target-fps F
-o OUT` renders a local file (batch use, e.g. `ray job submit -- python pipelines/render.py
--input ...`). Both take the render options of reframe.options, named as in `reframe render`.
"""

from __future__ import annotations

# Handlers import what they use when they run, so `reframe --help` and every other command
# stay instant (see reframe/cli/__init__.py).
import argparse
import json
import logging
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from reframe.errors import InvalidInput, ReframeError
from reframe.options import (
    RenderOptions,
    add_cluster_arguments,
    add_output_arguments,
    add_render_arguments,
    fps_argument,
    options_from_args,
    output_from_args,
    parse_fps,
)

if TYPE_CHECKING:
    from reframe.config import Settings

log = logging.getLogger(__name__)


def add_address_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (default: $RAY_ADDRESS, else a local cluster, else a new one)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipelines/render.py",
        description="Render smoother video on a Ray cluster (RIFE 4.26 frame interpolation).",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--job-id", help="render an accepted job (service use)")
    what.add_argument("--input", type=Path, help="a local video file (batch use)")
    parser.add_argument(
        "--attempt",
        type=int,
        help="with --job-id: the dispatcher's attempt number; a stale attempt does nothing",
    )
    parser.add_argument("--target-fps", type=fps_argument, help="output frame rate (with --input)")
    parser.add_argument("-o", "--output", type=Path, help="output file (with --input)")
    parser.add_argument("--watermark", action="store_true", help="mark the output as a preview")
    add_render_arguments(parser)
    add_output_arguments(parser)  # with --input; a job's output is the customer's choice
    add_cluster_arguments(parser)
    add_address_argument(parser)
    return parser


def check_file_request(args: argparse.Namespace) -> tuple[Path, Fraction, Path]:
    """(input, target fps, absolute output) of an `--input` render, refused before Ray starts
    (the output flags included)."""
    from reframe.video.mux import container_format

    if args.target_fps is None or args.output is None:
        raise InvalidInput("--input needs --target-fps and -o/--output")
    source: Path = args.input
    target = parse_fps(args.target_fps)
    if not source.is_file():
        raise InvalidInput(f"{source}: no such file")
    output: Path = args.output.resolve()
    container_format(output)
    output_from_args(args, options_from_args(args), output, target)
    return source, target, output


def render_file(args: argparse.Namespace, settings: Settings, options: RenderOptions) -> int:
    """The `--input` mode on the connected cluster; prints chunk progress and a summary."""
    from reframe.pipeline.actors import WorkerConfig
    from reframe.pipeline.ray_pipeline import render_local_file
    from reframe.storage import build_storage

    source, target, output = check_file_request(args)
    chosen = output_from_args(args, options, output, target)

    def report(done: int, total: int, chunks_done: int, chunks: int) -> None:
        print(
            f"progress: {done}/{total} frames, {chunks_done}/{chunks} chunks",
            file=sys.stderr,
            flush=True,
        )

    result = render_local_file(
        source,
        output,
        target,
        storage=build_storage(settings),
        worker=WorkerConfig.from_settings(settings),
        options=options,
        watermark=args.watermark,
        progress=report,
        output_format=chosen.format,
        playback_fps=chosen.playback_fps,
        max_seconds=chosen.seconds,
    )
    print(
        f"wrote {output}: {result.frames} frames from {len(result.plan)} chunks "
        f"in {result.seconds:.1f} s"
    )
    return 0


def render_job(args: argparse.Namespace, settings: Settings, options: RenderOptions) -> int:
    """The `--job-id` mode: one attempt of an accepted job, settled by the job driver."""
    from reframe.db import make_engine, make_sessionmaker
    from reframe.db.models import Job
    from reframe.jobs.driver import AttemptReporter, render_stored_job, run_attempt
    from reframe.pipeline.actors import WorkerConfig
    from reframe.storage import build_storage

    storage = build_storage(settings)
    worker = WorkerConfig.from_settings(settings)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)

    def render(job: Job, report: AttemptReporter) -> str:
        log.info("render started: %s -> %d fps", job.input_file.storage_key, job.target_fps)
        file_id, result = render_stored_job(
            job,
            report,
            on_ready=report.ready,
            storage=storage,
            sessions=sessions,
            worker=worker,
            options=options,
        )
        print(
            f"job {job.id}: output file {file_id}, {result.frames} frames from "
            f"{len(result.plan)} chunks on {len(result.actor_ids)} actor(s) in "
            f"{result.seconds:.1f} s; chunks: "
            + json.dumps(
                [
                    {
                        "chunk": c.index,
                        "actor": c.actor_id,
                        "started_at": round(c.started_at, 3),
                        "finished_at": round(c.finished_at, 3),
                        "frames": c.frames,
                    }
                    for c in result.chunks
                ]
            ),
            flush=True,
        )
        log.info(
            "render finished: output file %s, %d frames in %.1f s (%.1f s to the first chunk)",
            file_id,
            result.frames,
            result.seconds,
            result.startup_seconds,
        )
        return file_id

    try:
        return run_attempt(settings, args.job_id, args.attempt, render, sessions=sessions)
    finally:
        engine.dispose()


def render_with_ray(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """`reframe render --ray`: the same render on a Ray cluster (joined or started locally).

    `args` comes from `reframe render`'s parser (render, cluster and address arguments).
    """
    from reframe.config import Settings
    from reframe.pipeline.cluster import connect_ray

    settings = settings or Settings()
    options = options_from_args(args)
    check_file_request(args)
    started = connect_ray(args.address)
    try:
        return render_file(args, settings, options)
    finally:
        if started:
            import ray

            ray.shutdown()


def main(
    argv: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    lower_priority: bool = False,
) -> int:
    from reframe.config import load_settings
    from reframe.logs import bound
    from reframe.pipeline.cluster import connect_ray

    args = build_parser().parse_args(argv)
    try:
        settings = settings or load_settings()
        settings.log_setup().apply("driver")
        options = options_from_args(args)  # refused before connecting, not after
        if not args.job_id:
            check_file_request(args)
        if lower_priority and settings.process_priority:
            from reframe.sched import yield_to_the_api

            yield_to_the_api()
        started = connect_ray(args.address)
        try:
            if args.job_id:
                # Every line of this process, and of the actors its render spec reaches
                # (reframe.pipeline.actors), names the job and the attempt.
                with bound(job_id=args.job_id, attempt=args.attempt):
                    return render_job(args, settings, options)
            return render_file(args, settings, options)
        finally:
            if started:
                import ray

                ray.shutdown()
    except ReframeError as exc:
        print(f"render: error: {exc.message}", file=sys.stderr)
        return 2
