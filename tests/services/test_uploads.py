"""Upload rules that need no database: what probing an upload may cost."""

from __future__ import annotations

from reframe.config import Settings
from reframe.services.uploads import probe_limits


def test_limits_from_settings() -> None:
    settings = Settings(
        probe_timeout_sec=3.5, probe_max_pixels=1000, probe_max_frames=7, probe_max_bytes_read=99
    )
    limits = probe_limits(settings)
    assert (limits.timeout_sec, limits.max_pixels, limits.max_frames, limits.max_bytes_read) == (
        3.5,
        1000,
        7,
        99,
    )
