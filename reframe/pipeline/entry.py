"""Command line of the Ray render driver (`pipelines/render.py`, `reframe render --ray`).

Two modes: `--job-id ID` renders an accepted job (input and output in storage, status and
refunds through the job lifecycle); `--input FILE --target-fps F -o OUT` renders a local file
(batch use, e.g. `ray job submit -- python pipelines/render.py --input ...`).

Ray: inside `ray job submit` (RAY_ADDRESS is set) or with `--address`, the driver joins that
cluster; otherwise it joins a cluster running on this machine (`ray start --head`) if there is
one, and starts a private local one if not.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reframe.errors import InvalidInput, ReframeError, RenderError

if TYPE_CHECKING:
    from reframe.config import Settings
    from reframe.engine.scenes import SceneSettings
    from reframe.pipeline.ray_pipeline import PipelineOptions
    from reframe.video.encode import EncodeOptions

log = logging.getLogger("reframe.pipeline")


def _fps(value: str) -> Fraction:
    try:
        fps = Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a frame rate (use 60, 59.94 or 60000/1001)"
        ) from None
    if fps <= 0:
        raise argparse.ArgumentTypeError("the frame rate must be positive")
    return fps


def add_render_options(parser: argparse.ArgumentParser) -> None:
    """Encoder, engine and scene options, named and defaulted as in `reframe render`."""
    group = parser.add_argument_group("render options (as in `reframe render`)")
    group.add_argument("--codec", choices=("h264", "hevc"), default="h264")
    group.add_argument(
        "--crf", type=int, default=18, help="quality, 0 = lossless RGB (for measurement)"
    )
    group.add_argument("--preset", default="medium", help="x264/x265 speed preset")
    group.add_argument(
        "--scale",
        type=float,
        default=None,
        help="network scale: 1.0 up to 1080p, 0.5 for 4K (default: chosen by resolution)",
    )
    group.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    group.add_argument(
        "--batch-size", type=int, default=None, help="frames per forward pass (default by size)"
    )
    group.add_argument(
        "--no-scene-detect", action="store_true", help="interpolate across hard cuts too"
    )
    group.add_argument(
        "--no-dedup", action="store_true", help="treat repeated frames as motion pauses"
    )
    group.add_argument(
        "--cut-threshold", type=float, default=None, help="scene-cut sensitivity in (0, 1]"
    )
    group.add_argument("--watermark", action="store_true", help="mark the output as a preview")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray pipeline")
    group.add_argument("--chunk-frames", type=int, default=48, help="source frames per chunk")
    group.add_argument(
        "--actors",
        type=int,
        default=None,
        help="interpolator actors (default: 2 with GPUs; 1 on CPU, using every core)",
    )
    group.add_argument(
        "--num-gpus", type=float, default=0.0, help="GPUs per actor, fractions allowed (0: CPU)"
    )
    group.add_argument(
        "--num-cpus",
        type=float,
        default=None,
        help="CPUs reserved per actor (default 0.5 without GPUs, 1 with)",
    )
    group.add_argument(
        "--actor-threads",
        type=int,
        default=None,
        help="torch threads per CPU actor (default: all cores for one actor, else 1)",
    )
    group.add_argument(
        "--actor-memory-gb",
        type=float,
        default=None,
        help="memory each actor reserves in Ray's scheduler (e.g. 5 for 720p on CPU)",
    )
    group.add_argument(
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
    parser.add_argument("--target-fps", type=_fps, help="output frame rate (with --input)")
    parser.add_argument("-o", "--output", type=Path, help="output file (with --input)")
    add_render_options(parser)
    add_pipeline_options(parser)
    return parser


def pipeline_options(args: argparse.Namespace) -> PipelineOptions:
    from reframe.config import available_cpus
    from reframe.pipeline.actors import EngineOptions
    from reframe.pipeline.ray_pipeline import PipelineOptions

    gpu = args.num_gpus > 0
    # On CPU one actor with every core beats several single-thread actors on one machine: the
    # same throughput per core, one model copy instead of N (~5 GiB each at 720p), and no
    # chunks left over for a single actor at the end (bench/pipeline.py: +7 % vs +25 % over the
    # bare engine at 720p, start-up excluded).
    actors = args.actors if args.actors is not None else (2 if gpu else 1)
    threads = args.actor_threads
    if threads is None:
        threads = available_cpus() if not gpu and actors == 1 else 1
    engine = EngineOptions(
        device="cuda" if gpu else "cpu",
        scale=args.scale,
        precision=args.precision,
        threads=threads,
    )
    return PipelineOptions(
        batch_size=args.batch_size,
        chunk_frames=args.chunk_frames,
        actors=actors,
        num_gpus=args.num_gpus,
        num_cpus=args.num_cpus,
        engine=engine,
        actor_memory_bytes=(
            int(args.actor_memory_gb * 1024**3) if args.actor_memory_gb is not None else None
        ),
    )


def scene_settings(args: argparse.Namespace) -> SceneSettings:
    from reframe.engine.scenes import SceneSettings

    kwargs: dict[str, Any] = {
        "detect_cuts": not args.no_scene_detect,
        "detect_duplicates": not args.no_dedup,
    }
    if args.cut_threshold is not None:
        kwargs["cut_threshold"] = args.cut_threshold
    return SceneSettings(**kwargs)


def encode_options(args: argparse.Namespace) -> Callable[[bool], EncodeOptions]:
    from reframe.video.encode import EncodeOptions

    def build(watermark: bool) -> EncodeOptions:
        return EncodeOptions(
            codec=args.codec, crf=args.crf, preset=args.preset, watermark=watermark
        )

    build(False)  # validate now, not after the cluster has started
    return build


def connect_ray(address: str | None = None, *, local_cpus: int | None = None) -> bool:
    """Join or start Ray; True when this process started (and must stop) it.

    Authentication is decided by the cluster: Ray's own `RAY_AUTH_MODE` / `RAY_AUTH_TOKEN`
    variables or `~/.ray/auth_token`. A refusal is turned into instructions instead of a trace.
    """
    import ray

    if ray.is_initialized():  # e.g. a test session or a notebook already connected
        return False
    target = address or os.environ.get("RAY_ADDRESS")
    try:
        if target:
            ray.init(address=target, log_to_driver=True)
            return False
        try:
            ray.init(address="auto", log_to_driver=True)
            return False
        except ConnectionError:
            pass
        log.info("no running Ray cluster found; starting a local one")
        ray.init(address="local", num_cpus=local_cpus, include_dashboard=False)
        return True
    except ReframeError:
        raise
    except Exception as exc:
        text = str(exc)
        if "auth" in text.lower() or "token" in text.lower():
            raise RenderError(
                f"the Ray cluster refused this driver ({text.strip()[:200]}). It uses token "
                "authentication: run with RAY_AUTH_MODE=token and the cluster's token in "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token (see `ray get-auth-token`)"
            ) from exc
        raise


def check_file_request(args: argparse.Namespace) -> tuple[Path, Fraction, Path]:
    """(input, target fps, absolute output) of an `--input` render, refused before Ray starts."""
    from reframe.video.encode import container_format

    if args.target_fps is None or args.output is None:
        raise InvalidInput("--input needs --target-fps and -o/--output")
    source: Path = args.input
    target = args.target_fps
    if isinstance(target, str):  # `reframe render` passes the text through
        try:
            target = _fps(target)
        except argparse.ArgumentTypeError as exc:
            raise InvalidInput(str(exc)) from None
    if not source.is_file():
        raise InvalidInput(f"{source}: no such file")
    output: Path = args.output.resolve()
    container_format(output)
    return source, target, output


def _run_file(args: argparse.Namespace, settings: Settings) -> int:
    from reframe.pipeline.ray_pipeline import run_render
    from reframe.storage import build_storage

    source, target, output = check_file_request(args)
    storage = build_storage(settings)
    run_id = uuid.uuid4().hex
    # Actors may run on other machines: they read the source from storage, never from this
    # machine's disk.
    input_key = f"pipeline/{run_id}/input{source.suffix.lower() or '.mp4'}"
    storage.upload_file(source, input_key, "application/octet-stream")

    def report(done: int, total: int, chunks_done: int, chunks: int) -> None:
        print(
            f"progress: {done}/{total} frames, {chunks_done}/{chunks} chunks",
            file=sys.stderr,
            flush=True,
        )

    try:
        result = run_render(
            settings=settings,
            storage=storage,
            input_key=input_key,
            output=output,
            target_fps=target,
            encode=encode_options(args)(args.watermark),
            options=pipeline_options(args),
            progress=report,
            run_id=run_id,
            scenes=scene_settings(args),
        )
    finally:
        storage.delete(input_key)
    print(
        f"wrote {output}: {result.frames} frames from {len(result.plan)} chunks "
        f"in {result.seconds:.1f} s"
    )
    return 0


def _run_job(args: argparse.Namespace, settings: Settings) -> int:
    from reframe.db import make_engine, make_sessionmaker
    from reframe.db.models import Job
    from reframe.jobs.driver import ProgressFn, run_attempt
    from reframe.pipeline.job import render_stored_job
    from reframe.storage import build_storage

    storage = build_storage(settings)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    attempt = args.attempt
    if attempt is None:  # by hand: the job's current attempt
        with sessions() as session:
            job = session.get(Job, args.job_id)
            attempt = job.attempts if job is not None else 0

    def render(job: Job, progress: ProgressFn) -> str:
        file_id, result = render_stored_job(
            job.id,
            progress,
            settings=settings,
            storage=storage,
            sessions=sessions,
            options=pipeline_options(args),
            encode=encode_options(args),
            scenes=scene_settings(args),
        )
        print(f"job {job.id}: output file {file_id}, {result.frames} frames")
        return file_id

    try:
        return run_attempt(settings, args.job_id, attempt, render)
    finally:
        engine.dispose()


def render_with_ray(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """`reframe render --ray`: the same render on a Ray cluster (joined or started locally).

    `args` comes from `reframe render`'s parser plus `add_pipeline_options`.
    """
    from reframe.config import Settings

    settings = settings or Settings()
    pipeline_options(args)
    encode_options(args)
    check_file_request(args)
    started = connect_ray(args.address)
    try:
        return _run_file(args, settings)
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
    from reframe.config import Settings

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = settings or Settings()
        pipeline_options(args)  # validate before connecting
        encode_options(args)
        if not args.job_id:
            check_file_request(args)
        if lower_priority and settings.process_priority:
            from reframe.sched import yield_to_the_api

            yield_to_the_api()
        started = connect_ray(args.address, local_cpus=None)
        try:
            if args.job_id:
                return _run_job(args, settings)
            return _run_file(args, settings)
        finally:
            if started:
                import ray

                ray.shutdown()
    except ReframeError as exc:
        print(f"render: error: {exc.message}", file=sys.stderr)
        return 2
