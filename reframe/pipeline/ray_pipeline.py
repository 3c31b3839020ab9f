"""A render as a Ray Data pipeline: plan -> chunk rows -> actor pool -> segments -> stitch.

The driver (this module) probes the source, plans the output timeline with the engine's pure
functions, cuts it into keyframe-aligned chunks and feeds one row per chunk into a single
`map_batches` stage running `ChunkRenderer` actors. Only chunk descriptors go in and segment
keys come out, so the object store holds a few kilobytes whatever the clip's length. Results
arrive in completion order; they are put back in chunk order by their index before stitching.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reframe.engine.render_core import default_batch_size, plan_render
from reframe.errors import InvalidMedia, RenderError
from reframe.pipeline.actors import ChunkRenderer, EngineOptions, RenderSpec, WorkerConfig
from reframe.pipeline.cluster import reservable_memory
from reframe.pipeline.plan import Chunk, plan_timeline_chunks
from reframe.pipeline.progress import ProgressCallback, ProgressMonitor, ReadyCallback, start_hub
from reframe.sched import available_cpus
from reframe.video.media import open_media
from reframe.video.mux import Segment, container_format, stitch_segments

if TYPE_CHECKING:
    from reframe.options import RenderOptions
    from reframe.storage import Storage
    from reframe.storage.base import ObjectPin
    from reframe.video.formats import OutputFormat

log = logging.getLogger(__name__)

MIB = 1024 * 1024

# What an interpolator actor holds besides the network's own memory (engine.inference): the Ray
# worker, the decoder and its frames, the encoder's lookahead and the segment being written.
# Measured with the actors' peak RSS at 360p-1080p (bench/pipeline.py --memory).
ACTOR_OVERHEAD_BYTES = 640 * MIB
# A GPU actor's host memory: the CUDA context and staging buffers, besides the overhead above.
GPU_ACTOR_HOST_BYTES = 1024 * MIB


# Object store the render's dataset may use: only chunk descriptors and segment keys travel
# through it (a few kilobytes), so this is a ceiling against a bug, not a working size.
OBJECT_STORE_BYTES = 256 * MIB


def actor_count(options: RenderOptions) -> int:
    """Actors for a render: as asked, else 2 with GPUs and 1 on CPU.

    On CPU one actor with every core beats several single-thread actors on one machine: the
    same throughput per core, one model copy instead of N (~5 GiB each at 720p), and no chunks
    left over for a single actor at the end (bench/pipeline.py: +7 % vs +25 % over the bare
    engine at 720p, start-up excluded).
    """
    if options.actors is not None:
        return options.actors
    return 2 if options.uses_gpus else 1


def engine_options(options: RenderOptions) -> EngineOptions:
    """How each actor builds its interpolator."""
    threads = options.threads
    if threads is None:
        threads = available_cpus() if not options.uses_gpus and actor_count(options) == 1 else 1
    return EngineOptions(
        device=options.resolved_device,
        scale=options.scale,
        precision=options.precision,
        threads=threads,
    )


def actor_memory_bytes(options: RenderOptions, width: int, height: int) -> int:
    """What each actor reserves in Ray's scheduler, so that a node is never packed with more
    actors than its memory holds: as configured, else the measured model of an actor at this
    picture size (network peak with its default forward batch, plus the actor's overhead)."""
    # engine.inference imports torch (2 s): the render driver, which only plans and stitches,
    # loads it only for this estimate.
    from reframe.engine.inference import cpu_peak_bytes

    if options.actor_memory_bytes is not None:
        return options.actor_memory_bytes
    if options.resolved_device.startswith("cuda"):
        return ACTOR_OVERHEAD_BYTES + GPU_ACTOR_HOST_BYTES
    return ACTOR_OVERHEAD_BYTES + cpu_peak_bytes(width, height, options.scale)


@dataclass(frozen=True)
class ChunkResult:
    index: int
    segment_key: str
    frames: int
    seconds: float
    started_at: float = 0.0  # epoch seconds when the actor began this chunk
    actor_id: str = ""
    peak_rss_bytes: int = 0  # the actor's peak resident memory after this chunk

    @property
    def finished_at(self) -> float:
        return self.started_at + self.seconds


@dataclass(frozen=True)
class PipelineResult:
    """What ran, and where the time went (epoch seconds and durations, for benchmarks)."""

    frames: int
    chunks: tuple[ChunkResult, ...]
    seconds: float
    plan: tuple[Chunk, ...]
    started_at: float = 0.0
    plan_seconds: float = 0.0
    stitch_seconds: float = 0.0
    actors: int = 0  # the pool's largest size
    actor_memory_bytes: int = 0  # what each actor reserved

    @property
    def actor_ids(self) -> tuple[str, ...]:
        return tuple(sorted({c.actor_id for c in self.chunks}))

    @property
    def peak_actor_rss_bytes(self) -> int:
        return max((c.peak_rss_bytes for c in self.chunks), default=0)

    @property
    def startup_seconds(self) -> float:
        """From the end of planning to the first chunk starting: actor start and model load."""
        first = min((c.started_at for c in self.chunks), default=self.started_at)
        return max(0.0, first - self.started_at - self.plan_seconds)


def keyframe_indices(
    path: Path, frame_pts: Sequence[int], *, demuxer: str | None = None
) -> list[int]:
    """Indices (in presentation order, matching `frame_pts`) of the video's keyframes.

    Reads packet headers only; chunk seams prefer these so that no actor decodes a GOP head
    only to throw it away. `demuxer`: the source's container format (`VideoInfo.demuxer`).
    """
    index_of = {int(p): i for i, p in enumerate(frame_pts)}
    with open_media(path, demuxer=demuxer) as container:
        if not container.streams.video:
            raise InvalidMedia(f"{path.name}: contains no video stream")
        stream = container.streams.video[0]
        found = {
            index_of[int(packet.pts)]
            for packet in container.demux(stream)
            if packet.is_keyframe and packet.pts is not None and int(packet.pts) in index_of
        }
    return sorted(found)


def _result_rows(dataset: Any) -> Iterator[ChunkResult]:
    for row in dataset.iter_rows():
        yield ChunkResult(
            index=int(row["index"]),
            segment_key=str(row["segment_key"]),
            frames=int(row["frames"]),
            seconds=float(row["seconds"]),
            started_at=float(row["started_at"]),
            actor_id=str(row["actor_id"]),
            peak_rss_bytes=int(row["peak_rss_bytes"]),
        )


def order_results(chunks: Sequence[Chunk], results: Mapping[int, ChunkResult]) -> list[ChunkResult]:
    """Results in chunk order, checked against the plan (completion order is arbitrary)."""
    missing = [c.index for c in chunks if c.index not in results]
    if missing:
        raise RenderError(f"chunks {missing} produced no segment")
    extra = sorted(set(results) - {c.index for c in chunks})
    if extra:
        raise RenderError(f"results for unplanned chunks {extra}")
    ordered = []
    for chunk in chunks:
        result = results[chunk.index]
        if result.frames != chunk.output_frames:
            raise RenderError(
                f"chunk {chunk.index} returned {result.frames} frames, "
                f"planned {chunk.output_frames}"
            )
        ordered.append(result)
    return ordered


def run_render(
    *,
    storage: Storage,
    worker: WorkerConfig,
    input_key: str,
    output: Path,
    target_fps: Fraction,
    options: RenderOptions,
    watermark: bool = False,
    progress: ProgressCallback | None = None,
    on_ready: ReadyCallback | None = None,
    run_id: str | None = None,
    demuxer: str | None = None,
    input_pin: ObjectPin | None = None,
    max_seconds: float | None = None,
    output_format: OutputFormat | None = None,
    playback_fps: Fraction | None = None,
) -> PipelineResult:
    """Render `input_key` (in `storage`) to the local file `output` on the connected Ray cluster.

    Ray must already be initialised (`pipelines/render.py` and `reframe render --ray` do that).
    `storage` is this process's client; actors build their own from `worker`. Segments are
    written under `pipeline/<run_id>/` and removed afterwards.
    `demuxer`: the container format the probe found; every open of the input insists on it.
    `input_pin`: the exact object to render (a job's priced input); every read of the input,
    here and in each actor, gets exactly those bytes or raises ObjectChanged.
    `max_seconds`: render only the first seconds of output (a preview): round(seconds x
    target fps) frames, the source's audio cut at the same point; None renders the whole clip.

    The pool is elastic: it starts as many actors as chunks and `options.actors` allow and
    keeps at least one, so a render whose GPUs are busy or still being provisioned starts on
    the first actor it gets. `on_ready` is called once, when the first actor has loaded the
    model; `progress` as frames are written (a few times a second) and as chunks finish.

    `output_format`: the customer's codec, quality and sound (None: `options`' encoder, sound
    kept); the container is `output`'s extension. `playback_fps`: slow motion, the frames
    synthesized at `target_fps` are stamped at this rate instead, from 0 and without sound.
    """
    import ray
    from ray.data import ActorPoolStrategy

    container_format(output)  # refuse an unknown extension before any work
    if not ray.is_initialized():
        raise RenderError("Ray is not initialised; call ray.init() or use pipelines/render.py")
    run_id = run_id or uuid.uuid4().hex
    actors = actor_count(options)
    encode = options.encode(watermark=watermark).with_output(output_format)
    keep_audio = output_format is None or output_format.audio
    slow = playback_fps is not None and playback_fps != target_fps
    started = time.perf_counter()
    started_at = time.time()

    with storage.local_path(input_key, pin=input_pin) as source:
        # The same analysis (cuts, repeats) and timeline as `reframe render` on this file.
        plan = plan_render(
            source, target_fps, scenes=options.scenes(), demuxer=demuxer, max_seconds=max_seconds
        )
        info, timeline = plan.info, plan.timeline
        frame_pts = plan.analysis.pts
        batch_size = options.batch_size or default_batch_size(info.width, info.height)
        chunks = plan_timeline_chunks(
            timeline,
            chunk_frames=options.chunk_frames,
            keyframes=keyframe_indices(source, frame_pts, demuxer=info.demuxer),
            batch_size=batch_size,
        )
        spec = RenderSpec(
            worker=worker,
            input_key=input_key,
            input_pin=input_pin,
            timeline=timeline,
            frame_pts=frame_pts,
            width=info.width,
            height=info.height,
            color=info.color,
            rotation=info.rotation,
            # Slow motion starts at 0: there is no sound to stay in step with.
            start_time=Fraction(0) if slow else plan.analysis.times[0],
            playback_fps=playback_fps if slow else None,
            segment_suffix=output_format.segment_suffix if output_format else ".mp4",
            encode=encode,
            engine=engine_options(options),
            batch_size=batch_size,
            segment_prefix=f"pipeline/{run_id}",
            metric_tags={"run": run_id[:12]},
            demuxer=info.demuxer,
            progress_hub=start_hub(),
        )
        plan_seconds = time.perf_counter() - started
        pool = min(actors, len(chunks))
        memory_per_actor = reservable_memory(
            actor_memory_bytes(options, info.width, info.height),
            num_cpus=options.actor_cpus,
            num_gpus=options.num_gpus,
        )
        log.info(
            "render %s: %d source frames -> %d output frames in %d chunks on up to %d %s "
            "actors (%.2f GiB each)",
            run_id,
            len(frame_pts),
            len(timeline),
            len(chunks),
            pool,
            f"{options.num_gpus:g}-GPU" if options.uses_gpus else "CPU",
            memory_per_actor / 1024**3,
        )

        total_frames = len(timeline)
        results: dict[int, ChunkResult] = {}
        ordered: list[ChunkResult] = []
        monitor = ProgressMonitor(spec.progress_hub, total_frames, len(chunks), progress, on_ready)
        monitor.start()
        try:
            dataset = ray.data.from_items(
                [chunk.to_row() for chunk in chunks], override_num_blocks=len(chunks)
            )
            context = dataset.context  # this dataset's own copy: no global side effects
            context.enable_progress_bars = False
            # Completion order is fine (and faster); the index restores the order below.
            context.execution_options.preserve_order = False
            context.execution_options.resource_limits = (
                context.execution_options.resource_limits.copy(
                    object_store_memory=OBJECT_STORE_BYTES
                )
            )
            rendered = dataset.map_batches(
                ChunkRenderer,
                fn_constructor_args=(spec,),
                compute=ActorPoolStrategy(
                    min_size=1,
                    max_size=pool,
                    initial_size=pool,
                    # One chunk per actor at a time: a chunk queued behind another on the first
                    # actor up would leave the next actor idle.
                    max_tasks_in_flight_per_actor=1,
                ),
                batch_size=1,
                num_cpus=options.actor_cpus,
                num_gpus=options.num_gpus,
                memory=memory_per_actor or None,
            )
            for result in _result_rows(rendered):
                if result.index in results:
                    raise RenderError(f"chunk {result.index} was returned twice")
                results[result.index] = result
                monitor.finish(result.index, result.frames)

            ordered = order_results(chunks, results)
            stitch_started = time.perf_counter()
            _stitch(
                storage,
                chunks,
                ordered,
                output,
                spec.output_fps,
                source if keep_audio and not slow else None,
                info,
                plan.audio_until,
            )
        finally:
            monitor.stop()
            with contextlib.suppress(Exception):
                ray.kill(spec.progress_hub)
            for index in range(len(chunks)):
                with contextlib.suppress(Exception):
                    storage.delete(spec.segment_key(index))

    return PipelineResult(
        frames=total_frames,
        chunks=tuple(ordered),
        seconds=time.perf_counter() - started,
        plan=tuple(chunks),
        started_at=started_at,
        plan_seconds=plan_seconds,
        stitch_seconds=time.perf_counter() - stitch_started,
        actors=pool,
        actor_memory_bytes=memory_per_actor,
    )


def _stitch(
    storage: Storage,
    chunks: list[Chunk],
    results: list[ChunkResult],
    output: Path,
    fps: Fraction,
    source: Path | None,
    info: Any,
    audio_until: Fraction | None = None,
) -> None:
    with contextlib.ExitStack() as stack:
        segments = [
            Segment(
                path=stack.enter_context(storage.local_path(result.segment_key)),
                start_frame=chunk.out_start,
                frames=result.frames,
            )
            for chunk, result in zip(chunks, results, strict=True)
        ]
        output.parent.mkdir(parents=True, exist_ok=True)
        # `source` None: the sound is dropped (asked for, or slow motion).
        audio = source if source is not None and info.audio_codec else None
        # Each segment's encoder already tagged the stream with the render's colour
        # description (the source's, or RGB/full range for lossless); the stitched stream
        # takes it from the first segment unchanged.
        with tempfile.TemporaryDirectory(prefix="reframe-stitch-", dir=output.parent) as tmp:
            partial = Path(tmp) / f"out{output.suffix}"
            stitch_segments(
                segments,
                partial,
                frame_rate=fps,
                audio_source=audio,
                audio_demuxer=info.demuxer,
                audio_until=audio_until,
            )
            partial.replace(output)


def render_local_file(
    source: Path,
    output: Path,
    target_fps: Fraction,
    *,
    storage: Storage,
    worker: WorkerConfig,
    options: RenderOptions,
    watermark: bool = False,
    progress: ProgressCallback | None = None,
    on_ready: ReadyCallback | None = None,
    output_format: OutputFormat | None = None,
    playback_fps: Fraction | None = None,
    max_seconds: float | None = None,
) -> PipelineResult:
    """Render a file of this machine on the connected cluster (`reframe render --ray`); the
    output choices are `run_render`'s.

    Actors may run on other machines: they read the source from storage, never from this
    machine's disk, so it is uploaded first and removed afterwards.
    """
    run_id = uuid.uuid4().hex
    input_key = f"pipeline/{run_id}/input{source.suffix.lower() or '.mp4'}"
    storage.upload_file(source, input_key, "application/octet-stream")
    try:
        return run_render(
            storage=storage,
            worker=worker,
            input_key=input_key,
            output=output,
            target_fps=target_fps,
            options=options,
            watermark=watermark,
            progress=progress,
            on_ready=on_ready,
            run_id=run_id,
            output_format=output_format,
            playback_fps=playback_fps,
            max_seconds=max_seconds,
        )
    finally:
        storage.delete(input_key)
