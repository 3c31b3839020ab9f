"""Per-key token buckets: `rate_per_sec` sustained, `burst` at once, 429 with Retry-After beyond.

The Redis bucket is refilled and spent inside one Lua script, timed by the Redis server's own
clock, so concurrent API replicas neither race nor disagree about time. The in-process bucket is
the same arithmetic under a lock, for embedded mode: there each API replica counts on its own,
so a key can reach the limit once per replica. Splitting the limit between replicas instead
would refuse a client whose requests all land on one of them, below the limit it was promised.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from reframe.errors import RateLimited
from reframe.jobs._redis import connect, connect_async

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


K = TypeVar("K")
V = TypeVar("V")


def put_bounded(table: OrderedDict[K, V], key: K, value: V, max_keys: int) -> None:
    """Store `key` as the most recently used entry and drop the least recently used ones past
    `max_keys`: constant time, however many keys a flood brings (the caller holds the lock)."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > max_keys:
        table.popitem(last=False)


class MemoryRateLimiter:
    """The buckets in this process, least recently used first: past `max_keys` the oldest is
    dropped in constant time (no scan), so a flood of new keys cannot grow the table without
    bound. The dropped bucket is the one most likely full again anyway; if not, its owner gets
    a fresh burst, which needs `max_keys` other clients in between."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys

    def take(self, key: str, limit: RateLimit, cost: float = 1.0) -> Decision:
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(limit.burst), now))
            tokens, decision = _refill_and_take(tokens, last, now, limit, cost)
            put_bounded(self._buckets, key, (tokens, now), self._max_keys)
            return decision

    def size(self) -> int:
        return len(self._buckets)


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
            self._async = (loop, connect_async(self._url).register_script(_TAKE_LUA))
        script = self._async[1]
        allowed, remaining, retry = await script(keys=self._keys(key), args=self._args(limit, cost))
        return Decision(bool(int(allowed)), float(remaining), float(retry))


Kind = Literal["read", "write"]


class RequestLimits:
    """Two buckets per account or client address: polled reads and work-starting writes."""

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

    def enabled(self, kind: Kind) -> bool:
        return (self.read if kind == "read" else self.write).enabled

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
                f"Too many {kind} requests from this account or address: the limit is "
                f"{limit.rate_per_sec:g}/s with bursts of {limit.burst}. Retry in {wait}s "
                "(see the Retry-After header); poll GET /jobs/{id} every 3-5 seconds.",
                retry_after=wait,
            )


def rate_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url:
        return RedisRateLimiter(
            connect(settings.redis_url), prefix=settings.redis_prefix, url=settings.redis_url
        )
    return MemoryRateLimiter(max_keys=settings.rate_limit_max_keys)


# -- per-email login throttle -------------------------------------------------------------------


class LoginThrottle(Protocol):
    """Attempts to log in as one email, counted from every address.

    `attempt` either counts an attempt and returns 0.0, or refuses it (uncounted: hammering
    a locked email does not lengthen its wait) and returns the seconds left. The first
    `free_attempts` in a row pass; from then on each one sets a wait of
    `base_sec * 2**(n - free_attempts)`, capped at `max_sec`. The cap is what keeps the
    owner from being locked out: an attacker can slow them down, never shut them out for more
    than `max_sec`. `succeeded` forgets the email's attempts; so does a quiet `window_sec`.
    """

    def attempt(self, email: str) -> float: ...

    def succeeded(self, email: str) -> None: ...


def _email_key(email: str) -> str:
    # Neither Redis nor a memory dump needs the address itself.
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]


def _backoff(count: int, free: int, base: float, cap: float) -> float:
    return min(cap, base * 2.0 ** min(count - free, 60))


class MemoryLoginThrottle:
    """The throttle in this process (embedded mode): per replica, bounded like the buckets."""

    def __init__(
        self,
        *,
        free_attempts: int,
        base_sec: float,
        max_sec: float,
        window_sec: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free, self._base, self._max, self._window = (
            free_attempts,
            base_sec,
            max_sec,
            window_sec,
        )
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # email key -> (attempts counted, locked until, last counted attempt)
        self._records: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    def attempt(self, email: str) -> float:
        key = _email_key(email)
        with self._lock:
            now = self._clock()
            count, until, last = self._records.get(key, (0, 0.0, now))
            if now - last > self._window:
                count, until = 0, 0.0
            if now < until:
                return until - now
            count += 1
            if count >= self._free:
                until = now + _backoff(count, self._free, self._base, self._max)
            put_bounded(self._records, key, (count, until, now), self._max_keys)
            return 0.0

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._records.pop(_email_key(email), None)

    def size(self) -> int:
        return len(self._records)


# KEYS[1] the email's record; ARGV free, base, max, window. Returns the wait as a string ("0":
# counted). Timed by the Redis server like the buckets, so replicas agree.
_ATTEMPT_LUA = """
local free = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'n', 'until')
local n = tonumber(state[1]) or 0
local locked_until = tonumber(state[2]) or 0
if now < locked_until then
  return tostring(locked_until - now)
end
n = n + 1
if n >= free then
  local e = n - free
  if e > 60 then e = 60 end
  locked_until = now + math.min(cap, base * 2 ^ e)
end
redis.call('HSET', KEYS[1], 'n', n, 'until', tostring(locked_until))
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return '0'
"""


class RedisLoginThrottle:
    """The throttle in Redis, shared by every replica; a record expires `window_sec` after its
    last counted attempt, so the key space is bounded by what was tried in that window."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "reframe:",
        *,
        free_attempts: int,
        base_sec: float,
        max_sec: float,
        window_sec: float,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_ATTEMPT_LUA)
        self._args = [str(free_attempts), repr(base_sec), repr(max_sec), repr(window_sec)]

    def _key(self, email: str) -> str:
        return f"{self._prefix}login:{_email_key(email)}"

    def attempt(self, email: str) -> float:
        return float(self._script(keys=[self._key(email)], args=self._args))

    def succeeded(self, email: str) -> None:
        self._client.delete(self._key(email))


def login_throttle(settings: Settings) -> LoginThrottle:
    free, base = settings.login_free_attempts, settings.login_backoff_base_sec
    cap, window = settings.login_backoff_max_sec, settings.login_failure_window_sec
    if settings.redis_url:
        return RedisLoginThrottle(
            connect(settings.redis_url),
            prefix=settings.redis_prefix,
            free_attempts=free,
            base_sec=base,
            max_sec=cap,
            window_sec=window,
        )
    return MemoryLoginThrottle(
        free_attempts=free,
        base_sec=base,
        max_sec=cap,
        window_sec=window,
        max_keys=settings.rate_limit_max_keys,
    )
