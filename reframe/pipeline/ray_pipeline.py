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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reframe.errors import InvalidInput, InvalidMedia, RenderError
from reframe.pipeline.actors import ChunkRenderer, EngineOptions, RenderSpec
from reframe.pipeline.plan import Chunk, plan_timeline_chunks
from reframe.pipeline.stitch import Segment, stitch_segments

if TYPE_CHECKING:
    from reframe.config import Settings
    from reframe.engine.scenes import SceneSettings
    from reframe.storage import Storage
    from reframe.video.encode import EncodeOptions

log = logging.getLogger(__name__)

MIB = 1024 * 1024

# Called after each finished chunk with (output frames done, output frames total, chunks done,
# chunks total): the shape `reframe.jobs.driver` expects.
ProgressCallback = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class PipelineOptions:
    """Cluster-side knobs of a render (the engine and encoder options travel separately).

    `num_gpus` per actor may be fractional (0.5 packs two actors on one GPU). With no GPU each
    actor takes `num_cpus` (default 0.5) so that, on a 2-core machine, two actors and Ray Data's
    own tasks still fit: asking for whole cores there deadlocks the pool.
    """

    chunk_frames: int = 48
    actors: int = 2
    batch_size: int | None = None  # render-core batch; None: the engine's default for the size
    num_gpus: float = 0.0
    num_cpus: float | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    object_store_bytes: int = 256 * MIB
    # Heap each actor reserves from Ray's scheduler (not a hard limit). A 720p CPU actor with the
    # engine's default batch of 8 peaked at ~4.8 GiB here; None leaves it unreserved.
    actor_memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise InvalidInput(f"actors must be at least 1, got {self.actors}")
        if self.num_gpus < 0 or (self.num_cpus is not None and self.num_cpus <= 0):
            raise InvalidInput("num_gpus must be >= 0 and num_cpus > 0")
        if self.chunk_frames < 2:
            raise InvalidInput(f"chunk frames must be at least 2, got {self.chunk_frames}")

    @property
    def actor_cpus(self) -> float:
        if self.num_cpus is not None:
            return self.num_cpus
        return 1.0 if self.num_gpus > 0 else 0.5


@dataclass(frozen=True)
class ChunkResult:
    index: int
    segment_key: str
    frames: int
    seconds: float
    started_at: float = 0.0  # epoch seconds when the actor began this chunk


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
    from reframe.video.media import open_media

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
    settings: Settings,
    storage: Storage,
    input_key: str,
    output: Path,
    target_fps: Fraction,
    encode: EncodeOptions,
    options: PipelineOptions | None = None,
    progress: ProgressCallback | None = None,
    weights: Path | None = None,
    run_id: str | None = None,
    scenes: SceneSettings | None = None,
    demuxer: str | None = None,
) -> PipelineResult:
    """Render `input_key` (in `storage`) to the local file `output` on the connected Ray cluster.

    Ray must already be initialised (`pipelines/render.py` and `reframe render --ray` do that).
    Segments are written under `pipeline/<run_id>/` in `storage` and removed afterwards.
    `demuxer`: the container format the probe found; every open of the input insists on it.
    """
    import ray
    from ray.data import ActorPoolStrategy

    from reframe.engine.render import default_batch_size, plan_render
    from reframe.video.encode import container_format

    container_format(output)  # refuse an unknown extension before any work
    if not ray.is_initialized():
        raise RenderError("Ray is not initialised; call ray.init() or use pipelines/render.py")
    options = options or PipelineOptions()
    run_id = run_id or uuid.uuid4().hex
    started = time.perf_counter()
    started_at = time.time()

    with storage.local_path(input_key) as source:
        # The same analysis (cuts, repeats) and timeline as `reframe render` on this file.
        plan = plan_render(source, target_fps, scenes=scenes, demuxer=demuxer)
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
            settings=settings,
            input_key=input_key,
            timeline=timeline,
            frame_pts=frame_pts,
            width=info.width,
            height=info.height,
            color=info.color,
            rotation=info.rotation,
            start_time=plan.analysis.times[0],
            encode=encode,
            engine=options.engine,
            batch_size=batch_size,
            segment_prefix=f"pipeline/{run_id}",
            weights=weights,
            metric_tags={"run": run_id[:12]},
            demuxer=info.demuxer,
        )
        plan_seconds = time.perf_counter() - started
        log.info(
            "render %s: %d source frames -> %d output frames in %d chunks on %d actors",
            run_id,
            len(frame_pts),
            len(timeline),
            len(chunks),
            options.actors,
        )

        total_frames = len(timeline)
        results: dict[int, ChunkResult] = {}
        ordered: list[ChunkResult] = []
        done_frames = 0
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
                    object_store_memory=options.object_store_bytes
                )
            )
            memory: dict[str, Any] = (
                {"memory": options.actor_memory_bytes}
                if options.actor_memory_bytes is not None
                else {}
            )
            rendered = dataset.map_batches(
                ChunkRenderer,
                fn_constructor_args=(spec,),
                compute=ActorPoolStrategy(size=min(options.actors, len(chunks))),
                batch_size=1,
                num_cpus=options.actor_cpus,
                num_gpus=options.num_gpus,
                **memory,
            )
            for result in _result_rows(rendered):
                if result.index in results:
                    raise RenderError(f"chunk {result.index} was returned twice")
                results[result.index] = result
                done_frames += result.frames
                if progress is not None:
                    progress(done_frames, total_frames, len(results), len(chunks))

            ordered = order_results(chunks, results)
            stitch_started = time.perf_counter()
            _stitch(storage, chunks, ordered, output, timeline.target_fps, source, info)
        finally:
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
    )


def _stitch(
    storage: Storage,
    chunks: list[Chunk],
    results: list[ChunkResult],
    output: Path,
    fps: Fraction,
    source: Path,
    info: Any,
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
        audio = source if info.audio_codec else None
        # Each segment's encoder already tagged the stream with the render's colour
        # description (the source's, or RGB/full range for lossless); the stitched stream
        # takes it from the first segment unchanged.
        with tempfile.TemporaryDirectory(prefix="reframe-stitch-", dir=output.parent) as tmp:
            partial = Path(tmp) / f"out{output.suffix}"
            stitch_segments(
                segments, partial, frame_rate=fps, audio_source=audio, audio_demuxer=info.demuxer
            )
            partial.replace(output)
