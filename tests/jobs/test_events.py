from __future__ import annotations

import threading

from reframe.jobs.events import EventBus, StatusEvent


def test_event_json_round_trip() -> None:
    ev = StatusEvent("j1", "failed", 1.5, account_id="a1", detail={"error": "decode failed"})
    assert StatusEvent.from_json(ev.to_json()) == ev


def test_every_subscriber_gets_every_event(bus: EventBus) -> None:
    first = bus.subscribe()
    second = bus.subscribe()
    try:
        events = [StatusEvent(f"j{i}", "queued", float(i)) for i in range(3)]
        for ev in events:
            bus.publish(ev)
        for sub in (first, second):
            got = [sub.get(timeout=10.0) for _ in events]  # returns on arrival
            assert got == events
            assert sub.get(timeout=0.05) is None
    finally:
        first.close()
        second.close()


def test_a_closed_subscription_stops_receiving(bus: EventBus) -> None:
    sub = bus.subscribe()
    sub.close()
    other = bus.subscribe()
    try:
        bus.publish(StatusEvent("j", "done", 1.0))
        assert other.get(timeout=10.0) is not None
    finally:
        other.close()


def test_publish_from_another_thread_wakes_a_waiting_subscriber(bus: EventBus) -> None:
    sub = bus.subscribe()
    try:
        timer = threading.Timer(0.1, bus.publish, args=(StatusEvent("j9", "processing", 2.0),))
        timer.start()
        got = sub.get(timeout=5.0)
        timer.join()
        assert got is not None
        assert got.job_id == "j9"
    finally:
        sub.close()
