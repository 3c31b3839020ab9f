"""Live progress of one render, from the actors to the driver, while chunks are still running.

Ray Data hands a chunk's result back only when the whole chunk is done, which is too coarse for
a person watching a job (a one-chunk clip would jump from 0 to 100 %). So every render gets a
small `ProgressHub` actor: each interpolator actor tells it when its model is loaded and how
many frames of its current chunk it has written, and the driver reads a snapshot a few times a
second (`ProgressMonitor`) and turns it into the render's progress callback.

The hub holds a few integers per chunk and takes no CPU from the render (num_cpus=0); calls to
it are fire-and-forget, so a slow hub can delay a report, never a frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (output frames done, output frames total, chunks done, chunks total)
ProgressCallback = Callable[[int, int, int, int], None]
ReadyCallback = Callable[[], None]

# How often an actor reports frames of a chunk in progress, and the driver looks.
REPORT_EVERY_SEC = 0.5
POLL_EVERY_SEC = 0.5


class ProgressHub:
    """The Ray actor: models loaded, and frames written per chunk in progress."""

    def __init__(self) -> None:
        self.ready: set[str] = set()
        self.frames: dict[int, int] = {}

    def actor_ready(self, actor_id: str) -> None:
        self.ready.add(actor_id)

    def chunk_frames(self, index: int, frames: int) -> None:
        self.frames[index] = max(frames, self.frames.get(index, 0))

    def snapshot(self) -> tuple[int, dict[int, int]]:
        return len(self.ready), dict(self.frames)


def start_hub() -> Any:
    """A hub for one render (Ray must be initialised); its handle travels in the RenderSpec."""
    import ray

    hub_cls: Any = ray.remote(num_cpus=0, max_restarts=0)(ProgressHub)
    return hub_cls.remote()


class ChunkReporter:
    """The actor's side: reports frames of one chunk at most every REPORT_EVERY_SEC."""

    def __init__(self, hub: Any, index: int, clock: Callable[[], float] = time.monotonic):
        self._hub = hub
        self._index = index
        self._clock = clock
        self._last = float("-inf")

    def frames(self, written: int, *, final: bool = False) -> None:
        now = self._clock()
        if self._hub is None or (not final and now - self._last < REPORT_EVERY_SEC):
            return
        self._last = now
        self._hub.chunk_frames.remote(self._index, written)


@dataclass
class ProgressMonitor:
    """The driver's side: a thread that reads the hub and calls `progress` / `on_ready`.

    Finished chunks (`finish`, from the driver's result loop) count in full; chunks in flight
    count what their actor reported. Reports only ever go up.
    """

    hub: Any
    frames_total: int
    chunks_total: int
    progress: ProgressCallback | None
    on_ready: ReadyCallback | None
    _done: dict[int, int] = field(default_factory=dict)
    _reported: int = 0  # nothing is said before the first frame is out
    _ready: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reframe-progress", daemon=True)
        self._thread.start()

    def finish(self, index: int, frames: int) -> None:
        """A chunk's result arrived; report at once (this is also the only report without a
        hub, e.g. when the hub died)."""
        with self._lock:
            self._done[index] = frames
        self._report({})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        import ray

        while not self._stop.wait(POLL_EVERY_SEC):
            try:
                ready, partial = ray.get(self.hub.snapshot.remote(), timeout=10)
            except Exception:  # noqa: S112 - a missed look costs one report, not the render
                continue
            if ready and not self._ready:
                self._ready = True
                if self.on_ready is not None:
                    self.on_ready()
            self._report(partial)

    def _report(self, partial: dict[int, int]) -> None:
        with self._lock:
            done = dict(self._done)
            frames = sum(done.values()) + sum(
                n for index, n in partial.items() if index not in done
            )
            frames = min(frames, self.frames_total)
            if frames <= self._reported:
                return
            self._reported = frames
            if self.progress is not None:
                self.progress(frames, self.frames_total, len(done), self.chunks_total)
