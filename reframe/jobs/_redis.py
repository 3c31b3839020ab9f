"""Redis connection helper shared by the Redis-backed stores. Imported lazily by the factories."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    import redis.asyncio


def connect(url: str) -> redis.Redis:
    """A client that returns `str`, with short timeouts so a dead Redis fails a request fast."""
    import redis

    client: redis.Redis = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
    )
    return client


def connect_async(url: str) -> redis.asyncio.Redis:
    """The asyncio twin of `connect`, for calls made on the API's event loop."""
    import redis.asyncio

    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
    )
    return client
