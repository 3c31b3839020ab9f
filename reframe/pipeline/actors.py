"""The interpolator actor of the Ray Data stage: one chunk in, one encoded segment out.

Ray Data constructs `ChunkRenderer` once per actor (model load, storage client, metrics) and
calls it with batches of chunk rows. Frames never leave the actor: it decodes its own chunk from
storage, interpolates, encodes a segment with the render's one encoder configuration (watermark
included, because stitching only copies packets), uploads it, and returns a few integers and a
key per chunk.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reframe.errors import RenderError
from reframe.logs import LogSetup
from reframe.pipeline.plan import Chunk

if TYPE_CHECKING:
    from reframe.config import Settings
    from reframe.engine.timeline import Timeline
    from reframe.storage import Storage, StorageConfig
    from reframe.video.decode import ColorInfo
    from reframe.video.encode import EncodeOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """How each actor builds its interpolator (see `reframe.engine.inference.Interpolator`)."""

    device: str = "cpu"
    scale: float | None = None
    precision: str = "fp32"
    threads: int = 1
    max_batch: int = 8


@dataclass(frozen=True)
class WorkerConfig:
    """What every actor needs to find its storage and the model on its node, and nothing
    secret: storage credentials are read on the node (see `StorageConfig`).

    `weights` is an explicit state dict (REFRAME_RIFE_WEIGHTS) or None for the model cache in
    `model_dir` (pulled there on first use); `lower_priority` runs actors at the lowest CPU
    priority so that a machine that also serves the API keeps answering (reframe.sched).
    """

    storage: StorageConfig
    model_dir: Path
    weights: Path | None = None
    lower_priority: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        from reframe.storage import StorageConfig

        return cls(
            storage=StorageConfig.from_settings(settings),
            model_dir=settings.model_dir,
            weights=settings.rife_weights,
            lower_priority=settings.process_priority,
        )


@dataclass(frozen=True)
class RenderSpec:
    """Everything an actor needs, shipped once per actor through the object store.

    `input_key` names the source in the worker's storage; `frame_pts` lets a chunk seek to the
    keyframe before its first frame; `batch_size` is the render core's batch (the plan's seams
    depend on it); segment keys are `segment_prefix/<chunk index>.<ext>`.
    """

    worker: WorkerConfig
    input_key: str
    timeline: Timeline
    frame_pts: tuple[int, ...]
    width: int
    height: int
    color: ColorInfo
    rotation: int
    start_time: Fraction
    encode: EncodeOptions
    engine: EngineOptions
    batch_size: int
    segment_prefix: str
    segment_suffix: str = ".mp4"
    metric_tags: dict[str, str] = field(default_factory=dict)
    # How the driver that built the spec logs, with its job and attempt: actors log the same
    # way, so their lines can be followed with the job's (reframe.logs).
    logging: LogSetup = field(default_factory=LogSetup.current)

    def segment_key(self, chunk_index: int) -> str:
        return f"{self.segment_prefix}/{chunk_index:05d}{self.segment_suffix}"


class ChunkRenderer:
    """Ray Data callable class: `__call__` takes a batch of chunk rows (dict of arrays)."""

    def __init__(self, spec: RenderSpec) -> None:
        from reframe.engine.inference import Interpolator
        from reframe.engine.weights import resolve_weights
        from reframe.sched import yield_to_the_api

        spec.logging.apply("actor")
        worker = spec.worker
        if worker.lower_priority:
            # Before torch starts its threads, so they inherit it (see reframe.sched).
            yield_to_the_api()
        self.spec = spec
        self.storage: Storage = worker.storage.build()
        weights = resolve_weights(worker.model_dir, worker.weights, pull_if_missing=True)
        options = spec.engine
        self.interpolator = Interpolator(
            weights,
            device=options.device,
            scale=options.scale,
            precision=options.precision,  # type: ignore[arg-type]
            threads=options.threads,
            max_batch=options.max_batch,
        )
        self._workdir = tempfile.TemporaryDirectory(prefix="reframe-chunk-")
        # The source stays open (and, for S3, downloaded once) for the actor's lifetime.
        self._stack = contextlib.ExitStack()
        self._source: Path = self._stack.enter_context(self.storage.local_path(spec.input_key))
        self._metrics = _Metrics(spec.metric_tags)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [{name: batch[name][i] for name in batch} for i in range(len(batch["index"]))]
        results = [self.render(Chunk.from_row(row)) for row in rows]
        return {
            "index": np.array([r["index"] for r in results], dtype=np.int64),
            "segment_key": np.array([r["segment_key"] for r in results], dtype=object),
            "frames": np.array([r["frames"] for r in results], dtype=np.int64),
            "seconds": np.array([r["seconds"] for r in results], dtype=np.float64),
            "started_at": np.array([r["started_at"] for r in results], dtype=np.float64),
        }

    def render(self, chunk: Chunk) -> dict[str, Any]:
        from reframe.engine.render_core import render_chunk
        from reframe.video.encode import VideoWriter

        started_at = time.time()  # wall clock, comparable with the driver's
        started = time.perf_counter()
        spec = self.spec
        fps = spec.timeline.target_fps
        local = Path(self._workdir.name) / f"{chunk.index:05d}{spec.segment_suffix}"
        frames = render_chunk(
            self._source,
            spec.timeline,
            chunk.out_start,
            chunk.out_stop,
            self.interpolator,
            frame_pts=spec.frame_pts,
            batch_size=spec.batch_size,
            threads=1,
        )
        # The segment is stamped where its frames sit in the whole render, so its timestamps
        # already equal the single-process output's; stitching then only copies packets.
        with VideoWriter(
            local,
            width=spec.width,
            height=spec.height,
            fps=fps,
            options=spec.encode,
            color=spec.color,
            rotation=spec.rotation,
            start_time=spec.start_time + chunk.out_start / fps,
        ) as writer:
            for frame in frames:
                writer.write(frame.rgb)
        if writer.frames_written != chunk.output_frames:
            raise RenderError(
                f"chunk {chunk.index} produced {writer.frames_written} frames, "
                f"expected {chunk.output_frames}"
            )
        key = spec.segment_key(chunk.index)
        self.storage.upload_file(local, key, "video/mp4")
        local.unlink()
        seconds = time.perf_counter() - started
        self._metrics.record(chunk.output_frames, seconds)
        log.info(
            "chunk %d rendered: %d frames in %.2f s", chunk.index, chunk.output_frames, seconds
        )
        return {
            "index": chunk.index,
            "segment_key": key,
            "frames": chunk.output_frames,
            "seconds": seconds,
            "started_at": started_at,
        }

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
            self._workdir.cleanup()


class _Metrics:
    """Ray metrics for the dashboard / Prometheus: frames rendered and per-chunk latency."""

    def __init__(self, tags: dict[str, str]) -> None:
        from ray.util.metrics import Counter, Histogram

        keys = tuple(sorted(tags))
        self._tags = dict(tags)
        self.frames = Counter(
            "reframe_frames_rendered",
            description="Output frames rendered by pipeline actors.",
            tag_keys=keys,
        )
        self.latency = Histogram(
            "reframe_chunk_seconds",
            description="Wall time to decode, interpolate, encode and upload one chunk.",
            boundaries=[0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320],
            tag_keys=keys,
        )

    def record(self, frames: int, seconds: float) -> None:
        self.frames.inc(frames, tags=self._tags)
        self.latency.observe(seconds, tags=self._tags)
