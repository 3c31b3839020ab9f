"""Redis connection helpers shared by the Redis-backed stores; `redis` itself is imported on the
first connection, so a deployment without Redis never loads it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    import redis.asyncio

# Clients return `str`, and short timeouts make a dead Redis fail a request fast.
_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "health_check_interval": 30,
}


def connect(url: str) -> redis.Redis:
    import redis

    client: redis.Redis = redis.Redis.from_url(url, **_OPTIONS)
    return client


def connect_async(url: str) -> redis.asyncio.Redis:
    """The asyncio twin of `connect`, for calls made on the API's event loop."""
    import redis.asyncio

    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url, **_OPTIONS)
    return client
