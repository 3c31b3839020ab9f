"""Live progress of running renders, for cheap polling.

The database row is the durable record; this store carries the per-chunk numbers that change
several times a second and must not cost a database write per poll. With Redis every process
(API replicas, dispatcher, render drivers) shares one view; without it the in-process store
serves embedded mode, where the render driver also writes its progress to the job row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from reframe.jobs._redis import connect

if TYPE_CHECKING:
    import redis
    from redis.typing import EncodableT, FieldT

    from reframe.config import Settings
    from reframe.db.models import Job

# Live entries outlive any render by far; they only expire so abandoned keys do not pile up.
DEFAULT_TTL_SEC = 24 * 3600


@dataclass(frozen=True)
class LiveProgress:
    """A render's position. `eta_sec` is None until there is a rate to extrapolate from."""

    status: str
    frames_done: int
    frames_total: int
    eta_sec: float | None
    attempt: int
    updated_at: float

    @property
    def progress(self) -> float:
        if self.frames_total <= 0:
            return 0.0
        return min(1.0, max(0.0, self.frames_done / self.frames_total))


def estimate_eta(frames_done: int, frames_total: int, elapsed_sec: float) -> float | None:
    """Seconds left at the average rate so far; None before the first frame is out."""
    if frames_done <= 0 or elapsed_sec <= 0 or frames_total <= 0:
        return None
    remaining = max(0, frames_total - frames_done)
    return remaining * elapsed_sec / frames_done


class ProgressStore(Protocol):
    def put(self, job_id: str, live: LiveProgress) -> None: ...

    def get(self, job_id: str) -> LiveProgress | None: ...

    def clear(self, job_id: str) -> None: ...


class MemoryProgressStore:
    """Process-local store; thread-safe because the dispatcher reports from worker threads."""

    def __init__(
        self, ttl_sec: float = DEFAULT_TTL_SEC, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_sec
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, LiveProgress]] = {}

    def put(self, job_id: str, live: LiveProgress) -> None:
        with self._lock:
            self._items[job_id] = (self._clock() + self._ttl, live)
            if len(self._items) > 10_000:
                self._drop_expired()

    def get(self, job_id: str) -> LiveProgress | None:
        with self._lock:
            item = self._items.get(job_id)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._items[job_id]
                return None
            return item[1]

    def clear(self, job_id: str) -> None:
        with self._lock:
            self._items.pop(job_id, None)

    def _drop_expired(self) -> None:
        now = self._clock()
        for key in [k for k, (exp, _) in self._items.items() if exp <= now]:
            del self._items[key]


class RedisProgressStore:
    """One hash per job, written with its expiry in one transaction."""

    def __init__(
        self, client: redis.Redis, prefix: str = "reframe:", ttl_sec: int = DEFAULT_TTL_SEC
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_sec

    def _key(self, job_id: str) -> str:
        return f"{self._prefix}progress:{job_id}"

    def put(self, job_id: str, live: LiveProgress) -> None:
        fields: dict[FieldT, EncodableT] = {
            k: ("" if v is None else str(v)) for k, v in asdict(live).items()
        }
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._key(job_id), mapping=fields)
        pipe.expire(self._key(job_id), self._ttl)
        pipe.execute()

    def get(self, job_id: str) -> LiveProgress | None:
        raw: dict[str, str] = self._client.hgetall(self._key(job_id))  # type: ignore[assignment]
        if not raw:
            return None
        try:
            return LiveProgress(
                status=raw["status"],
                frames_done=int(raw["frames_done"]),
                frames_total=int(raw["frames_total"]),
                eta_sec=float(raw["eta_sec"]) if raw.get("eta_sec") else None,
                attempt=int(raw["attempt"]),
                updated_at=float(raw["updated_at"]),
            )
        except (KeyError, ValueError):
            # A hash written by an incompatible version is not worth failing a poll over: the
            # database row still answers.
            return None

    def clear(self, job_id: str) -> None:
        self._client.delete(self._key(job_id))


class ProgressTracker:
    """Turns a render's per-chunk callback into `LiveProgress` records with an ETA.

    The rate is measured from the first report, not from construction, so model loading
    (cold start) does not make the first ETA absurdly long.
    """

    def __init__(
        self,
        store: ProgressStore,
        job_id: str,
        attempt: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._attempt = attempt
        self._clock = clock
        self._wall = wall_clock
        self._start: tuple[float, int] | None = None

    def report(self, frames_done: int, frames_total: int) -> LiveProgress:
        now = self._clock()
        if self._start is None:
            # The first chunk's frames were produced before we could time them; count the rate
            # from here on, but keep the frames in the progress figure.
            self._start = (now, frames_done)
            eta = None
        else:
            t0, f0 = self._start
            eta = estimate_eta(frames_done - f0, frames_total - f0, now - t0)
        live = LiveProgress(
            status="processing",
            frames_done=frames_done,
            frames_total=frames_total,
            eta_sec=None if eta is None else round(eta, 1),
            attempt=self._attempt,
            updated_at=self._wall(),
        )
        self._store.put(self._job_id, live)
        return live


def overlay_live(job: Job, live: LiveProgress | None) -> tuple[float, int | None, float | None]:
    """(progress, frames_done, eta_sec) to show for `job`: the live store's when it is newer.

    The row is written at most every few seconds, the store on every report. An entry from
    another attempt, or behind the row, can only be stale (a retry clears the store).
    """
    if (
        live is None
        or job.status.value != "processing"
        or live.attempt != job.attempts
        or (job.frames_done is not None and live.frames_done < job.frames_done)
    ):
        return job.progress, job.frames_done, job.eta_sec
    return live.progress, live.frames_done, live.eta_sec


def progress_store(settings: Settings) -> ProgressStore:
    """The shared Redis store when REFRAME_REDIS_URL is set, else a process-local one."""
    if settings.redis_url:
        return RedisProgressStore(connect(settings.redis_url), prefix=settings.redis_prefix)
    return MemoryProgressStore()
