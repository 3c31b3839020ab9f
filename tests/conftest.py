"""Shared fixtures. Each area keeps its own in tests/fixtures/<area>.py, registered here."""

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A service started as users start it (`scripts/run`) brings a local Ray whose job agent
    # needs a fixed port (reframe.cli.serve.RAY_AGENT_PORT); the session's shared Ray
    # (tests/fixtures/ray.py) would hold it once started, so those tests go first.
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is None)
