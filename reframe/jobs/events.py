"""Job status-change notifications between processes.

Pub/sub is a doorbell, not a record: the job row (and its recorded transitions) is the truth,
and webhook deliveries live in an outbox table. Subscribers (the dispatcher, the webhook
sender) use an event to wake up now instead of at their next poll, so a lost message costs
latency, never correctness.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import TYPE_CHECKING, Protocol

from reframe.jobs._redis import connect
from reframe.services.transitions import StatusEvent

if TYPE_CHECKING:
    import redis
    import redis.client

    from reframe.config import Settings


class Subscription(Protocol):
    def get(self, timeout: float) -> StatusEvent | None:
        """The next event, or None after `timeout` seconds without one."""
        ...

    def close(self) -> None: ...


class EventBus(Protocol):
    def publish(self, event: StatusEvent) -> None: ...

    def subscribe(self) -> Subscription: ...


class _MemorySubscription:
    def __init__(self, bus: MemoryEventBus) -> None:
        self._bus = bus
        # Bounded so a subscriber that stopped reading cannot grow memory without limit; when
        # full, new events are dropped for it (they are doorbells, see the module docstring).
        self.queue: queue.Queue[StatusEvent] = queue.Queue(maxsize=10_000)

    def get(self, timeout: float) -> StatusEvent | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._bus._remove(self)


class MemoryEventBus:
    """Fan-out to subscribers in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[_MemorySubscription] = []

    def publish(self, event: StatusEvent) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            # A full queue means that subscriber is behind; it catches up from the database.
            with contextlib.suppress(queue.Full):
                sub.queue.put_nowait(event)

    def subscribe(self) -> Subscription:
        sub = _MemorySubscription(self)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: _MemorySubscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)


class _RedisSubscription:
    def __init__(self, pubsub: redis.client.PubSub) -> None:
        self._pubsub = pubsub

    def get(self, timeout: float) -> StatusEvent | None:
        msg = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if msg is None or msg.get("type") != "message":
            return None
        try:
            return StatusEvent.from_json(msg["data"])
        except (ValueError, KeyError, TypeError):
            return None  # not ours or from an incompatible version; the database still knows

    def close(self) -> None:
        self._pubsub.close()


class RedisEventBus:
    def __init__(self, client: redis.Redis, prefix: str = "reframe:") -> None:
        self._client = client
        self.channel = f"{prefix}job-status"

    def publish(self, event: StatusEvent) -> None:
        self._client.publish(self.channel, event.to_json())

    def subscribe(self) -> Subscription:
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(self.channel)
        # Wait for the subscribe confirmation so that an event published right after
        # `subscribe()` returns is not missed.
        pubsub.get_message(timeout=2.0)
        return _RedisSubscription(pubsub)


def event_bus(settings: Settings) -> EventBus:
    if settings.redis_url:
        return RedisEventBus(connect(settings.redis_url), prefix=settings.redis_prefix)
    return MemoryEventBus()
