from __future__ import annotations

import threading
import time

import pytest

from reframe.config import Settings
from reframe.errors import RateLimited
from reframe.jobs.ratelimit import (
    MemoryRateLimiter,
    RateLimit,
    RateLimiter,
    RequestLimits,
)


def test_burst_then_refusal_with_retry_after(limiter: RateLimiter) -> None:
    limit = RateLimit(rate_per_sec=1.0, burst=5)
    results = [limiter.take("k1", limit) for _ in range(6)]
    assert [d.allowed for d in results] == [True] * 5 + [False]
    assert results[4].remaining == pytest.approx(0.0, abs=0.05)
    # One token is missing at 1 token/s; a few ms may have refilled already.
    assert 0.8 < results[5].retry_after <= 1.0


def test_tokens_refill_at_the_rate(limiter: RateLimiter) -> None:
    limit = RateLimit(rate_per_sec=20.0, burst=2)
    assert limiter.take("k2", limit).allowed
    assert limiter.take("k2", limit).allowed
    assert not limiter.take("k2", limit).allowed
    time.sleep(0.12)  # ~2.4 tokens refill, capped at the burst of 2
    assert limiter.take("k2", limit).allowed
    assert limiter.take("k2", limit).allowed
    assert not limiter.take("k2", limit).allowed


def test_keys_have_separate_buckets(limiter: RateLimiter) -> None:
    limit = RateLimit(rate_per_sec=0.01, burst=1)
    assert limiter.take("alice", limit).allowed
    assert not limiter.take("alice", limit).allowed
    assert limiter.take("bob", limit).allowed


def test_concurrent_takers_never_exceed_the_burst(limiter: RateLimiter) -> None:
    # Refill is negligible over the test, so exactly `burst` takes may succeed no matter how
    # the threads interleave: a non-atomic read-modify-write would let more through.
    limit = RateLimit(rate_per_sec=0.001, burst=30)
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            ok = limiter.take("shared", limit).allowed
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 100
    assert sum(allowed) == 30


def test_request_limits_raise_rate_limited_with_whole_seconds() -> None:
    limits = RequestLimits(
        MemoryRateLimiter(), read=RateLimit(0.5, 2), write=RateLimit(rate_per_sec=0, burst=0)
    )
    limits.check("key", "read")
    limits.check("key", "read")
    with pytest.raises(RateLimited) as info:
        limits.check("key", "read")
    assert info.value.status_code == 429
    assert info.value.retry_after == 2  # 1 token at 0.5/s, rounded up to whole seconds
    assert "Retry-After" in info.value.message
    # A rate of 0 switches the bucket off.
    for _ in range(100):
        limits.check("key", "write")


def test_request_limits_from_settings() -> None:
    settings = Settings(rate_limit_write_per_sec=1.0, rate_limit_write_burst=1)
    limits = RequestLimits.from_settings(settings)
    limits.check("k", "write")
    with pytest.raises(RateLimited):
        limits.check("k", "write")
    limits.check("k", "read")  # the read bucket is separate


@pytest.mark.redis
def test_the_api_loop_spends_from_the_same_redis_bucket(redis_url: str, redis_prefix: str) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    settings = Settings(
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        rate_limit_read_per_sec=0.001,
        rate_limit_read_burst=4,
    )
    limits = RequestLimits.from_settings(settings)

    async def poll_three() -> None:
        for _ in range(3):
            await limits.acheck("shared-key", "read")

    def on_a_new_loop() -> None:
        # Each call is an event loop of its own, on a thread of its own: the test runner's
        # thread may already have one running (Playwright's).
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, poll_three()).result()

    on_a_new_loop()
    limits.check("shared-key", "read")  # the fourth token, spent from a blocking caller
    with pytest.raises(RateLimited):
        on_a_new_loop()  # a fresh event loop gets its own client, same bucket
