"""A video's frame rate and length, measured from its real presentation timestamps.

Pure functions over exact rationals, shared by the probe (which prices and limits a clip) and
the renderer (which plans its timeline), so both see the same rate and the same length.

Why not the header: phones record variable frame rates (intervals wobble, and the camera
drops frames outright in low light), screen recorders write Matroska without a default frame
duration (FFmpeg then guesses the 1 ms time base, "1000 fps", as the rate), and a header's
duration is a number anyone can rewrite. So:

* the rate is the mean over the frames: intervals between the first and last distinct
  timestamps, ``(n - 1) / (t_last - t_first)``. The header's rates (`avg_frame_rate`,
  `r_frame_rate`) and the usual broadcast rates are only candidates: a constant-rate stream
  whose mean lies within timestamp rounding of one of them reports that exact ratio
  (24000/1001, not 1800000/75075);
* a stream is variable when any interval strays from the median one by more than timestamp
  rounding allows (one tick of the time base, plus 1 % of the interval);
* the video lasts from its first frame to the end of its last one (the last frame shows for
  one interval: the exact period at a constant rate, the median interval otherwise), or as
  long as the header says if that is longer (audio or a held frame may run on). A header can
  lengthen a clip, never shorten it below what its frames span.

The rule that an output rate must exceed the source's compares against the measured rate
rounded to `SOURCE_FPS_DECIMALS` decimals, so a 59.94 source renders at 60 while a 60 fps
phone clip measured at 60.003 does not "need" 60.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import median

from reframe.errors import InvalidMedia

SOURCE_FPS_DECIMALS = 2

SINGLE_FRAME = (
    "the video has a single frame, so there is nothing to interpolate between; upload a clip "
    "with motion (at least two frames)"
)

# Rates cameras, editors and broadcasters use; a constant-rate stream near one of them is it.
COMMON_RATES: tuple[Fraction, ...] = tuple(
    Fraction(r)
    for r in (
        10,
        12,
        15,
        20,
        Fraction(24000, 1001),
        24,
        25,
        Fraction(30000, 1001),
        30,
        48,
        50,
        Fraction(60000, 1001),
        60,
        72,
        90,
        100,
        Fraction(120000, 1001),
        120,
        144,
        240,
    )
)

# Beyond the rounding of the end points, how far a candidate ratio may sit from the measured
# mean and still be taken as the exact rate.
_RATE_TOLERANCE = Fraction(1, 10_000)


@dataclass(frozen=True)
class StreamTiming:
    """What the timestamps of one video stream say. Times are seconds, rates frames/second."""

    frames: int  # frames with a timestamp of their own (repeated timestamps count once)
    rate: Fraction  # the rate to report and plan with (an exact ratio at a constant rate)
    measured: Fraction  # the plain mean over the frames
    span: Fraction  # first frame to the end of the last one
    variable: bool

    def rounded_rate(self) -> Fraction:
        return rounded_fps(self.rate)


def rounded_fps(fps: Fraction | float | int) -> Fraction:
    """`fps` rounded half-up to `SOURCE_FPS_DECIMALS` decimals, exactly."""
    scale = 10**SOURCE_FPS_DECIMALS
    return Fraction(int((Fraction(fps) * scale + Fraction(1, 2)).__floor__()), scale)


def exceeds_source(target_fps: Fraction | float | int, source_fps: Fraction | float | int) -> bool:
    """The reference's rule "target_fps must be greater than the source FPS", on the measured
    rate rounded to `SOURCE_FPS_DECIMALS` decimals (59.94 -> 60 passes; 60.003 -> 60 does not)."""
    return Fraction(target_fps) > rounded_fps(source_fps)


def source_fps_rule() -> str:
    """The rule in words, for the API's pricing config and error messages."""
    return (
        "target_fps must be greater than the source frame rate, which is measured from the "
        "file's frame timestamps (the mean over all frames, so variable-frame-rate clips count "
        f"at their average) and rounded to {SOURCE_FPS_DECIMALS} decimals: a 59.94 fps source "
        "can be rendered at 60"
    )


def measure_timing(
    times: Iterable[Fraction],
    *,
    tick: Fraction,
    hints: Sequence[Fraction | None] = (),
) -> StreamTiming:
    """Measure a stream from the presentation times of its frames (any order, seconds).

    `tick`: the time base, i.e. how finely the container could store a time. `hints`: rates
    the header states, most trusted first (None or non-positive ones are skipped). Raises
    InvalidMedia for a clip with nothing to interpolate: one frame, or no duration.
    """
    all_times = sorted(times)
    if not all_times:
        raise InvalidMedia("the video stream has no frames; upload a video with content")
    if len(all_times) == 1:
        raise InvalidMedia(SINGLE_FRAME)
    distinct = sorted(set(all_times))
    if len(distinct) < 2:
        raise InvalidMedia(
            f"the video has zero duration: all {len(all_times)} of its frames have the same "
            "timestamp; re-export it from your editor or camera app and upload it again"
        )
    gaps = [b - a for a, b in itertools.pairwise(distinct)]
    typical = Fraction(median(gaps))
    first_to_last = distinct[-1] - distinct[0]
    measured = Fraction(len(distinct) - 1) / first_to_last
    slack = tick + typical / 100
    variable = any(abs(gap - typical) > slack for gap in gaps)

    rate = measured
    if not variable:
        # Each end point may be off by half a tick, which bounds how far the true rate can be.
        tolerance = (tick / first_to_last + _RATE_TOLERANCE) * measured
        rate = _exact_rate(measured, tolerance, hints) or measured
    last_frame = 1 / rate if not variable else typical
    return StreamTiming(
        frames=len(distinct),
        rate=rate,
        measured=measured,
        span=first_to_last + last_frame,
        variable=variable,
    )


def _exact_rate(
    measured: Fraction, tolerance: Fraction, hints: Sequence[Fraction | None]
) -> Fraction | None:
    """The ratio a constant-rate stream really runs at: the nearest usual rate within
    `tolerance` of the mean, else the nearest header rate, else the simplest nearby ratio.

    Usual rates go first because a header's average (MP4's avg_frame_rate is frames over
    duration) is itself a rounded measurement, e.g. 1800000/60059 for 30000/1001.
    """
    declared = [Fraction(h) for h in hints if h is not None and h > 0]
    simple = measured.limit_denominator(1001)
    for group in (COMMON_RATES, declared, (simple,)):
        near = [c for c in group if abs(c - measured) <= tolerance]
        if near:
            return min(near, key=lambda c: abs(c - measured))
    return None


def header_length(
    stream_duration: Fraction | None, container_duration: Fraction | None, first_frame: Fraction
) -> Fraction | None:
    """The clip's length from its first frame as the header states it (seconds), or None.

    A stream's own duration (MP4's track duration) runs from its first frame. A container's
    (Matroska's Segment Duration, which has none per track) runs from the file's time 0, so a
    picture that starts after the sound (phones do) lasts that much less. Reading the header
    short is harmless: the frames' span is the floor (`clip_duration`).
    """
    if stream_duration:
        return stream_duration
    if container_duration:
        return max(Fraction(0), container_duration - max(Fraction(0), first_frame))
    return None


def clip_duration(header: Fraction | None, timing: StreamTiming) -> Fraction:
    """How long the clip lasts: what its frames span, or the header's duration when longer."""
    if header is not None and header > timing.span:
        return header
    return timing.span
