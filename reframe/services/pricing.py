"""Pricing: which band a target frame rate falls in, and what a render of a clip costs.

charged_xeconds = ceil(duration_sec) x band multiplier, with the bands of the public reference.
Pure functions over Settings; no database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from reframe.config import Settings
from reframe.errors import InvalidInput, TooLarge
from reframe.video import timing

# A float duration like 2.0000001 from a container must not cost an extra xecond.
_DURATION_EPSILON = 1e-6


@dataclass(frozen=True)
class Band:
    name: str
    label: str
    min_fps: int
    max_fps: int
    multiplier: int

    def contains(self, fps: float) -> bool:
        return self.min_fps <= fps <= self.max_fps


BANDS: tuple[Band, ...] = (
    Band("smooth", "Smooth", 24, 60, 1),
    Band("slomo", "Slo-mo", 61, 120, 2),
    Band("ultra", "Ultra (cinematic slo-mo)", 121, 240, 4),
)


@dataclass(frozen=True)
class Quote:
    """The price of one target frame rate, or why it cannot be rendered."""

    target_fps: float
    allowed: bool
    band: str | None
    multiplier: int | None
    charged_xeconds: int | None
    reason: str | None = None


def band_for(target_fps: float) -> Band | None:
    for band in BANDS:
        if band.contains(target_fps):
            return band
    # Between two integer bands (e.g. 60.5): the higher band, since it needs more synthesis.
    for band in BANDS:
        if target_fps < band.min_fps and target_fps > BANDS[0].min_fps:
            return band
    return None


def billable_seconds(duration_sec: float) -> int:
    return max(1, math.ceil(duration_sec - _DURATION_EPSILON))


def target_fps_problem(target_fps: float, source_fps: float, settings: Settings) -> str | None:
    """Why `target_fps` cannot be rendered from `source_fps`, or None when it can."""
    lo, hi = settings.min_target_fps, settings.max_target_fps
    if not math.isfinite(target_fps) or not lo <= target_fps <= hi:
        return f"target_fps must be between {lo} and {hi} fps; got {target_fps:g}"
    if not timing.exceeds_source(target_fps, source_fps):
        shown = float(timing.rounded_fps(source_fps))
        return (
            "target_fps must be greater than the source frame rate "
            f"({shown:.{timing.SOURCE_FPS_DECIMALS}f} fps, measured from the file's timestamps "
            f"and rounded to {timing.SOURCE_FPS_DECIMALS} decimals); got {target_fps:g}"
        )
    return None


def check_duration(duration_sec: float, settings: Settings) -> None:
    """Raise TooLarge (413) over the launch length limit, InvalidInput for nonsense."""
    if not math.isfinite(duration_sec) or duration_sec <= 0:
        raise InvalidInput(f"duration_sec must be a positive number of seconds; got {duration_sec}")
    if duration_sec > settings.max_duration_sec:
        raise TooLarge(
            f"Launch limit is {settings.max_duration_sec:g}s per video; this one is "
            f"{duration_sec:.2f}s. Trim it and upload again. Longer video chunking is coming."
        )


def quote(duration_sec: float, source_fps: float, target_fps: float, settings: Settings) -> Quote:
    """Price one option. Never raises for an unusable fps: the quote says why instead."""
    problem = target_fps_problem(target_fps, source_fps, settings)
    band = band_for(target_fps)
    if problem is not None or band is None:
        return Quote(
            target_fps=target_fps,
            allowed=False,
            band=band.name if band else None,
            multiplier=band.multiplier if band else None,
            charged_xeconds=None,
            reason=problem or f"no pricing band covers {target_fps:g} fps",
        )
    return Quote(
        target_fps=target_fps,
        allowed=True,
        band=band.name,
        multiplier=band.multiplier,
        charged_xeconds=billable_seconds(duration_sec) * band.multiplier,
    )


def require_quote(
    duration_sec: float, source_fps: float, target_fps: float, settings: Settings
) -> Quote:
    """Price one option for a job: duration over the limit is 413, a bad fps is 400."""
    check_duration(duration_sec, settings)
    q = quote(duration_sec, source_fps, target_fps, settings)
    if not q.allowed:
        raise InvalidInput(q.reason or "target_fps is not allowed")
    return q
