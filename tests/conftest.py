"""Shared fixtures. Each area keeps its own in tests/fixtures/<area>.py, registered here."""

pytest_plugins = [
    "tests.fixtures.media",
]
