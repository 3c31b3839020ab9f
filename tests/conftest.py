"""Shared fixtures. Each area keeps its own in tests/fixtures/<area>.py, registered here."""

from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.db",
    "tests.fixtures.app",
    "tests.fixtures.storage",
    "tests.fixtures.s3",
    "tests.fixtures.redis",
    "tests.fixtures.ray",
    "tests.fixtures.weights",
    "tests.fixtures.browser",
    "tests.fixtures.render",
]


def _order(item: pytest.Item) -> int:
    # A service started as users start it (`scripts/run`) brings a local Ray whose job agent
    # needs a fixed port (reframe.cli.serve.RAY_AGENT_PORT); the session's shared Ray
    # (tests/fixtures/ray.py) would hold it once started, so those tests go first.
    if item.get_closest_marker("own_ray") is not None:
        return 0
    # Playwright's sync API leaves an asyncio loop running on the main thread for the rest of
    # the session (its session-scoped fixture), where asyncio.run() and Ray Serve's blocking
    # handle calls then refuse to work: the browser tests go last.
    if item.get_closest_marker("browser") is not None:
        return 2
    return 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_order)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands run in-process configure the root logger, as an entry point should; the next
    test must not inherit their handlers (which would write to its captured output)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
