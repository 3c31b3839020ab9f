"""Pricing rules as pure functions (no database)."""

from __future__ import annotations

import pytest

from reframe.config import Settings
from reframe.errors import InvalidInput, TooLarge
from reframe.services import pricing


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.mark.parametrize(
    ("fps", "band", "mult"),
    [
        (24, "smooth", 1),
        (60, "smooth", 1),
        (61, "slomo", 2),
        (120, "slomo", 2),
        (121, "ultra", 4),
        (240, "ultra", 4),
        (60.5, "slomo", 2),
    ],
)
def test_bands(fps: float, band: str, mult: int) -> None:
    found = pricing.band_for(fps)
    assert found is not None
    assert (found.name, found.multiplier) == (band, mult)


@pytest.mark.parametrize("fps", [0, 23, 241, 1000])
def test_outside_every_band(fps: float) -> None:
    assert pricing.band_for(fps) is None


@pytest.mark.parametrize(
    ("duration", "seconds"), [(0.01, 1), (1.0, 1), (1.0000001, 1), (1.01, 2), (119.5, 120)]
)
def test_billable_seconds_round_up(duration: float, seconds: int) -> None:
    assert pricing.billable_seconds(duration) == seconds


def test_quote_formula(settings: Settings) -> None:
    q = pricing.quote(12.3, 24, 120, settings)
    assert (q.allowed, q.band, q.multiplier, q.charged_xeconds) == (True, "slomo", 2, 26)


def test_quote_refuses_with_reasons(settings: Settings) -> None:
    assert "greater than the source" in (pricing.quote(5, 60, 60, settings).reason or "")
    assert "between 24 and 240" in (pricing.quote(5, 24, 20, settings).reason or "")
    assert "between 24 and 240" in (pricing.quote(5, 24, 300, settings).reason or "")
    assert pricing.quote(5, 24, float("nan"), settings).allowed is False


def test_require_quote_raises_the_right_errors(settings: Settings) -> None:
    with pytest.raises(TooLarge, match="120s"):
        pricing.require_quote(120.5, 24, 60, settings)
    with pytest.raises(InvalidInput, match="greater than"):
        pricing.require_quote(10, 30, 30, settings)
    with pytest.raises(InvalidInput, match="positive"):
        pricing.require_quote(0, 30, 60, settings)
    assert pricing.require_quote(120, 24, 60, settings).charged_xeconds == 120


def test_limits_follow_settings() -> None:
    s = Settings(min_target_fps=30, max_target_fps=120, max_duration_sec=10)
    assert pricing.quote(5, 24, 25, s).allowed is False
    assert pricing.quote(5, 24, 121, s).allowed is False
    with pytest.raises(TooLarge):
        pricing.check_duration(10.5, s)
