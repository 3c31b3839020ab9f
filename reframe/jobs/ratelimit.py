"""Per-key token buckets: `rate_per_sec` sustained, `burst` at once, 429 with Retry-After beyond.

The Redis bucket is refilled and spent inside one Lua script, timed by the Redis server's own
clock, so concurrent API replicas neither race nor disagree about time. The in-process bucket is
the same arithmetic under a lock, for embedded mode: there each API replica counts on its own,
so a key can reach the limit once per replica. Splitting the limit between replicas instead
would refuse a client whose requests all land on one of them, below the limit it was promised.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from reframe.errors import RateLimited

if TYPE_CHECKING:
    import redis
    from redis.commands.core import AsyncScript

    from reframe.config import Settings


@dataclass(frozen=True)
class RateLimit:
    rate_per_sec: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.rate_per_sec > 0 and self.burst > 0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: float
    retry_after: float  # seconds until `cost` tokens are back; 0 when allowed


def _refill_and_take(
    tokens: float, last: float, now: float, limit: RateLimit, cost: float
) -> tuple[float, Decision]:
    tokens = min(float(limit.burst), tokens + max(0.0, now - last) * limit.rate_per_sec)
    if tokens >= cost:
        return tokens - cost, Decision(True, tokens - cost, 0.0)
    return tokens, Decision(False, tokens, (cost - tokens) / limit.rate_per_sec)


class RateLimiter(Protocol):
    def take(self, key: str, limit: RateLimit, cost: float = 1.0) -> Decision: ...


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, limit: RateLimit, cost: float = 1.0) -> Decision:
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(limit.burst), now))
            tokens, decision = _refill_and_take(tokens, last, now, limit, cost)
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:
                self._forget_full(now, limit)
            return decision

    def _forget_full(self, now: float, limit: RateLimit) -> None:
        # A bucket that has refilled completely is indistinguishable from a missing one.
        full_after = limit.burst / limit.rate_per_sec
        for key in [k for k, (_, last) in self._buckets.items() if now - last > full_after]:
            del self._buckets[key]


# KEYS[1] bucket hash; ARGV rate, burst, cost. Returns {allowed, remaining, retry_after} with
# numbers as strings because Lua numbers returned to Redis are truncated to integers.
_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(retry)}
"""


class RedisRateLimiter:
    """The bucket in Redis. `take` blocks; `atake` is the same script from an asyncio client,
    so the API's middleware spends a token without a thread-pool hop (`url` enables it)."""

    def __init__(self, client: redis.Redis, prefix: str = "reframe:", *, url: str | None = None):
        self._prefix = prefix
        self._script = client.register_script(_TAKE_LUA)
        self._url = url
        # redis.asyncio clients belong to the event loop they first ran on: one per loop.
        self._async: tuple[asyncio.AbstractEventLoop, AsyncScript] | None = None

    def _keys(self, key: str) -> list[str]:
        return [f"{self._prefix}ratelimit:{key}"]

    @staticmethod
    def _args(limit: RateLimit, cost: float) -> list[str]:
        return [repr(limit.rate_per_sec), str(limit.burst), repr(cost)]

    def take(self, key: str, limit: RateLimit, cost: float = 1.0) -> Decision:
        allowed, remaining, retry = self._script(keys=self._keys(key), args=self._args(limit, cost))
        return Decision(bool(int(allowed)), float(remaining), float(retry))

    async def atake(self, key: str, limit: RateLimit, cost: float = 1.0) -> Decision:
        if self._url is None:
            from starlette.concurrency import run_in_threadpool

            return await run_in_threadpool(self.take, key, limit, cost)
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            from reframe.jobs._redis import connect_async

            self._async = (loop, connect_async(self._url).register_script(_TAKE_LUA))
        script = self._async[1]
        allowed, remaining, retry = await script(keys=self._keys(key), args=self._args(limit, cost))
        return Decision(bool(int(allowed)), float(remaining), float(retry))


Kind = Literal["read", "write"]


class RequestLimits:
    """The service's two buckets per API key: polled reads and work-starting writes."""

    def __init__(self, limiter: RateLimiter, read: RateLimit, write: RateLimit) -> None:
        self.limiter = limiter
        self.read = read
        self.write = write

    @classmethod
    def from_settings(cls, settings: Settings, limiter: RateLimiter | None = None) -> RequestLimits:
        return cls(
            limiter if limiter is not None else rate_limiter(settings),
            RateLimit(settings.rate_limit_read_per_sec, settings.rate_limit_read_burst),
            RateLimit(settings.rate_limit_write_per_sec, settings.rate_limit_write_burst),
        )

    def check(self, key: str, kind: Kind) -> None:
        """Spend one token from `key`'s bucket or raise `RateLimited` (429, Retry-After)."""
        limit = self.read if kind == "read" else self.write
        if limit.enabled:
            self._enforce(kind, limit, self.limiter.take(f"{kind}:{key}", limit))

    async def acheck(self, key: str, kind: Kind) -> None:
        """`check` for the event loop: Redis is awaited, the in-process bucket is just taken."""
        limit = self.read if kind == "read" else self.write
        if not limit.enabled:
            return
        if isinstance(self.limiter, RedisRateLimiter):
            decision = await self.limiter.atake(f"{kind}:{key}", limit)
        else:
            decision = self.limiter.take(f"{kind}:{key}", limit)  # a lock and arithmetic
        self._enforce(kind, limit, decision)

    @staticmethod
    def _enforce(kind: Kind, limit: RateLimit, decision: Decision) -> None:
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after))
            raise RateLimited(
                f"Too many {kind} requests for this API key: the limit is "
                f"{limit.rate_per_sec:g}/s with bursts of {limit.burst}. Retry in {wait}s "
                "(see the Retry-After header); poll GET /jobs/{id} every 3-5 seconds.",
                retry_after=wait,
            )


def rate_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url:
        from reframe.jobs._redis import connect

        return RedisRateLimiter(
            connect(settings.redis_url), prefix=settings.redis_prefix, url=settings.redis_url
        )
    return MemoryRateLimiter()
