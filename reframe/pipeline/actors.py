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
import os
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reframe.engine.render_core import render_chunk, render_depth
from reframe.engine.weights import resolve_weights
from reframe.errors import RenderError
from reframe.logs import LogSetup
from reframe.pipeline.plan import Chunk
from reframe.pipeline.progress import ChunkReporter
from reframe.sched import yield_to_the_api
from reframe.storage import StorageConfig
from reframe.video.encode import VideoWriter

if TYPE_CHECKING:
    from reframe.config import Settings
    from reframe.engine.timeline import Timeline
    from reframe.storage import Storage
    from reframe.storage.base import ObjectPin
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
    max_batch: int | None = None  # frames per forward pass; None: what fits (engine.inference)


class GpuUnavailable(RuntimeError):
    """Ray gave this actor a GPU, but torch on its node cannot use CUDA.

    Deliberately not a ReframeError: the render driver exits with it, and the dispatcher retries
    the job (another node may be fine) before failing and refunding it. The message is for the
    operator; the customer only learns that the render stopped.
    """


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
    # For test clusters with logical GPUs (`ray start --num-gpus=2` on a machine without
    # CUDA): an actor given a GPU then renders on CPU instead of failing. Never in production.
    allow_cpu_fallback: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        return cls(
            storage=StorageConfig.from_settings(settings),
            model_dir=settings.model_dir,
            weights=settings.rife_weights,
            lower_priority=settings.process_priority,
            allow_cpu_fallback=settings.render_allow_cpu_fallback,
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
    # Slow motion: the rate the frames are stamped at (None: the timeline's target rate).
    playback_fps: Fraction | None = None
    metric_tags: dict[str, str] = field(default_factory=dict)
    demuxer: str | None = None  # the input's probed container format (see video.media)
    progress_hub: Any = None  # reframe.pipeline.progress.ProgressHub handle, or None
    # The exact input object (a job's priced input): each actor's read is checked against it.
    input_pin: ObjectPin | None = None
    # How the driver that built the spec logs, with its job and attempt: actors log the same
    # way, so their lines can be followed with the job's (reframe.logs).
    logging: LogSetup = field(default_factory=LogSetup.current)

    @property
    def output_fps(self) -> Fraction:
        """The rate the output plays at: the playback rate for slow motion."""
        return self.playback_fps or self.timeline.target_fps

    def segment_key(self, chunk_index: int) -> str:
        return f"{self.segment_prefix}/{chunk_index:05d}{self.segment_suffix}"


class ChunkRenderer:
    """Ray Data callable class: `__call__` takes a batch of chunk rows (dict of arrays)."""

    def __init__(self, spec: RenderSpec) -> None:
        # torch loads in the actor that renders, not in the driver that imports this module to
        # build the actor pool.
        from reframe.engine.inference import Interpolator

        spec.logging.apply("actor")
        worker = spec.worker
        if worker.lower_priority:
            # Before torch starts its threads, so they inherit it (see reframe.sched).
            yield_to_the_api()
        self.spec = spec
        options = self._engine_options(spec.engine, worker)
        self.storage: Storage = worker.storage.build()
        weights = resolve_weights(worker.model_dir, worker.weights, pull_if_missing=True)
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
        self._source: Path = self._stack.enter_context(
            self.storage.local_path(spec.input_key, pin=spec.input_pin)
        )
        self._metrics = _Metrics(spec.metric_tags)
        self.actor_id = _actor_id()
        if spec.progress_hub is not None:
            # Model loaded, source at hand: from now on this actor renders (`processing`).
            spec.progress_hub.actor_ready.remote(self.actor_id)

    @staticmethod
    def _engine_options(options: EngineOptions, worker: WorkerConfig) -> EngineOptions:
        """The options this node can honour: a CUDA request on a node without CUDA fails, unless
        the worker config allows test clusters' logical GPUs to fall back to the CPU."""
        import torch

        if not options.device.startswith("cuda") or torch.cuda.is_available():
            return options
        import dataclasses
        import socket

        if worker.allow_cpu_fallback:
            return dataclasses.replace(options, device="cpu", precision="fp32")
        raise GpuUnavailable(
            f"this render actor on {socket.gethostname()} was given a GPU by Ray "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}), but torch "
            f"{torch.__version__} cannot use CUDA here (torch.cuda.is_available() is False). "
            "Install the CUDA build of torch on GPU nodes (README, GPU installs), or do not "
            "advertise GPUs on this node."
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [{name: batch[name][i] for name in batch} for i in range(len(batch["index"]))]
        results = [self.render(Chunk.from_row(row)) for row in rows]
        return {
            "index": np.array([r["index"] for r in results], dtype=np.int64),
            "segment_key": np.array([r["segment_key"] for r in results], dtype=object),
            "frames": np.array([r["frames"] for r in results], dtype=np.int64),
            "seconds": np.array([r["seconds"] for r in results], dtype=np.float64),
            "started_at": np.array([r["started_at"] for r in results], dtype=np.float64),
            "actor_id": np.array([r["actor_id"] for r in results], dtype=object),
            "peak_rss_bytes": np.array([r["peak_rss_bytes"] for r in results], dtype=np.int64),
        }

    def render(self, chunk: Chunk) -> dict[str, Any]:
        started_at = time.time()  # wall clock, comparable with the driver's
        started = time.perf_counter()
        spec = self.spec
        fps = spec.output_fps
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
            demuxer=spec.demuxer,
            depth=render_depth(spec.color),
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
            reporter = ChunkReporter(spec.progress_hub, chunk.index)
            for frame in frames:
                writer.write(frame.rgb)
                reporter.frames(writer.frames_written)
            reporter.frames(writer.frames_written, final=True)
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
            "actor_id": self.actor_id,
            "peak_rss_bytes": _peak_rss_bytes(),
        }

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
            self._workdir.cleanup()


def _actor_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_actor_id() or f"pid-{os.getpid()}")
    except Exception:  # outside Ray (tests call the renderer directly)
        return f"pid-{os.getpid()}"


def _peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


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
