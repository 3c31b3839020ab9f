"""Shared fixtures. Each area keeps its own in tests/fixtures/<area>.py, registered here."""

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
