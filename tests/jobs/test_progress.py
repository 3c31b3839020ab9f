from __future__ import annotations

import pytest

from reframe.config import Settings
from reframe.jobs.progress import (
    LiveProgress,
    MemoryProgressStore,
    ProgressStore,
    ProgressTracker,
    RedisProgressStore,
    estimate_eta,
    progress_store,
)


def test_eta_is_unknown_before_the_first_frame() -> None:
    assert estimate_eta(0, 100, 5.0) is None
    assert estimate_eta(10, 100, 0.0) is None


def test_eta_extrapolates_the_average_rate() -> None:
    # 25 frames in 5 s -> 5 frames/s -> 75 frames left take 15 s.
    assert estimate_eta(25, 100, 5.0) == pytest.approx(15.0)
    assert estimate_eta(100, 100, 5.0) == 0.0


def test_progress_fraction_is_clamped() -> None:
    live = LiveProgress("processing", 150, 100, None, 1, 0.0)
    assert live.progress == 1.0
    assert LiveProgress("processing", 3, 0, None, 1, 0.0).progress == 0.0


def test_store_round_trip_and_clear(progress_store: ProgressStore) -> None:
    assert progress_store.get("job-a") is None
    live = LiveProgress("processing", 12, 48, 3.5, 2, 1_700_000_000.25)
    progress_store.put("job-a", live)
    assert progress_store.get("job-a") == live
    assert progress_store.get("job-b") is None
    progress_store.put("job-a", LiveProgress("processing", 24, 48, None, 2, 1_700_000_001.0))
    got = progress_store.get("job-a")
    assert got is not None
    assert got.frames_done == 24
    assert got.eta_sec is None
    progress_store.clear("job-a")
    assert progress_store.get("job-a") is None


def test_memory_entries_expire() -> None:
    now = [100.0]
    store = MemoryProgressStore(ttl_sec=10, clock=lambda: now[0])
    store.put("j", LiveProgress("processing", 1, 2, None, 1, 0.0))
    now[0] = 109.0
    assert store.get("j") is not None
    now[0] = 110.5
    assert store.get("j") is None


def test_tracker_times_from_the_first_report(progress_store: ProgressStore) -> None:
    mono = [50.0]
    tracker = ProgressTracker(
        progress_store, "job-t", attempt=1, clock=lambda: mono[0], wall_clock=lambda: 9.0
    )
    first = tracker.report(10, 110)
    assert first.eta_sec is None  # model loading must not count as render time
    mono[0] = 60.0  # 20 more frames in 10 s -> 2 frames/s; 80 left -> 40 s
    second = tracker.report(30, 110)
    assert second.eta_sec == pytest.approx(40.0)
    assert second.progress == pytest.approx(30 / 110)
    assert progress_store.get("job-t") == second


@pytest.mark.redis
def test_redis_entries_carry_an_expiry(redis_url: str, redis_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisProgressStore(client, prefix=redis_prefix, ttl_sec=120)
    store.put("job-x", LiveProgress("processing", 1, 2, None, 1, 0.0))
    ttl = client.ttl(f"{redis_prefix}progress:job-x")
    assert 0 < int(ttl) <= 120  # type: ignore[arg-type]
    client.close()


def test_factory_picks_the_backend_from_settings(redis_url: str) -> None:
    assert isinstance(progress_store(Settings(redis_url=None)), MemoryProgressStore)
    assert isinstance(progress_store(Settings(redis_url=redis_url)), RedisProgressStore)
