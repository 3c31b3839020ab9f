"""The per-email login throttle and the bounded bucket table, on both backends."""

from __future__ import annotations

import time

import pytest
import redis

from reframe.jobs.ratelimit import (
    LoginThrottle,
    MemoryLoginThrottle,
    MemoryRateLimiter,
    RateLimit,
    RedisLoginThrottle,
)


@pytest.fixture
def throttle(backend: tuple[str, redis.Redis | None, str]) -> LoginThrottle:
    _kind, client, prefix = backend
    options = {"free_attempts": 2, "base_sec": 0.2, "max_sec": 0.4, "window_sec": 60.0}
    if client is None:
        return MemoryLoginThrottle(**options)
    return RedisLoginThrottle(client, prefix=prefix, **options)


def test_attempts_back_off_exponentially_up_to_the_bound(throttle: LoginThrottle) -> None:
    assert throttle.attempt("a@example.com") == 0.0
    assert throttle.attempt("a@example.com") == 0.0  # the second sets the first wait, 0.2 s
    wait = throttle.attempt("a@example.com")
    assert 0.1 < wait <= 0.2
    time.sleep(0.21)
    assert throttle.attempt("a@example.com") == 0.0  # then 0.4 s
    assert 0.3 < throttle.attempt("a@example.com") <= 0.4
    for _ in range(2):
        time.sleep(0.41)
        assert throttle.attempt("a@example.com") == 0.0
        # 0.8 s would come next; the bound keeps it at 0.4 s.
        assert 0.3 < throttle.attempt("a@example.com") <= 0.4
    assert throttle.attempt("b@example.com") == 0.0  # other emails are not touched


def test_refused_attempts_do_not_extend_the_wait(throttle: LoginThrottle) -> None:
    throttle.attempt("c@example.com")
    throttle.attempt("c@example.com")
    for _ in range(20):
        assert throttle.attempt("c@example.com") <= 0.2
    time.sleep(0.21)
    assert throttle.attempt("c@example.com") == 0.0


def test_a_success_forgets_the_failures(throttle: LoginThrottle) -> None:
    throttle.attempt("d@example.com")
    throttle.attempt("d@example.com")
    throttle.succeeded("d@example.com")
    assert throttle.attempt("d@example.com") == 0.0
    assert throttle.attempt("d@example.com") == 0.0


@pytest.mark.redis
def test_redis_records_expire(redis_client: redis.Redis, redis_prefix: str) -> None:
    throttle = RedisLoginThrottle(
        redis_client, prefix=redis_prefix, free_attempts=2, base_sec=1, max_sec=5, window_sec=30
    )
    throttle.attempt("e@example.com")
    keys = list(redis_client.scan_iter(match=f"{redis_prefix}*"))
    assert len(keys) == 1
    assert "e@example.com" not in keys[0]  # the email is not stored in clear
    assert 0 < redis_client.pttl(keys[0]) <= 30_000


def test_the_memory_tables_evict_the_least_recently_used_in_constant_time() -> None:
    limiter = MemoryRateLimiter(max_keys=100)
    limit = RateLimit(rate_per_sec=0.001, burst=1)
    assert limiter.take("kept", limit).allowed
    for n in range(10_000):
        limiter.take(f"k{n}", limit)
        if n % 50 == 0:
            limiter.take("kept", limit)  # recently used: never the one evicted
    assert limiter.size() <= 100
    assert not limiter.take("kept", limit).allowed  # still its spent bucket

    throttle = MemoryLoginThrottle(
        free_attempts=1, base_sec=60, max_sec=60, window_sec=60, max_keys=10
    )
    for n in range(1000):
        throttle.attempt(f"user{n}@example.com")
    assert throttle.size() <= 10


@pytest.mark.redis
def test_redis_buckets_expire(redis_client: redis.Redis, redis_prefix: str) -> None:
    from reframe.jobs.ratelimit import RedisRateLimiter

    limiter = RedisRateLimiter(redis_client, prefix=redis_prefix)
    limiter.take("x", RateLimit(rate_per_sec=1.0, burst=5))
    (key,) = redis_client.scan_iter(match=f"{redis_prefix}*")
    assert 0 < redis_client.pttl(key) <= 6000
