"""Exact output timing: which source frames (and which fractional position) each output frame uses.

Pure functions over exact rationals (`fractions.Fraction`), so a 120 s clip planned at 23.976 ->
240 fps accumulates no floating-point drift. Nothing here touches pixels, torch or Ray: the local
`reframe render` command and the Ray pipeline plan the same way and can slice the same plan.

The rules (issue 3, section 3):

* output frame ``k`` is presented at ``k / target_fps`` seconds after the first source frame;
* when a source frame lies strictly within half an output tick of that time, it is used
  unchanged (``OutputFrame.left == OutputFrame.right``);
* otherwise the frame is synthesized from the two surrounding source frames at
  ``t = (time - time_left) / (time_right - time_left)``;
* the output has ``round(duration * target_fps)`` frames, starts with the first source frame and
  always shows the last one (held to the end), so duration and audio sync are preserved;
* source times are the stream's real presentation timestamps, so variable-frame-rate input is
  planned by what it really is.

Strict "within" matters: at 24 -> 60 every second output tick is exactly half a tick away from a
source frame, and those ticks must be synthesized (t = 0.4, 0.8, 0.2, 0.6), not snapped.

Duplicate frames and scene cuts (see `reframe.engine.scenes`) enter as two optional inputs:
``anchors`` (the source frames that carry new content; interpolation spans from one anchor to the
next, skipping repeats) and ``cuts`` (anchors that start a new shot; nothing is blended across
them, the real frame nearest in time is shown instead).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from statistics import median

from reframe.errors import InvalidInput, InvalidMedia

RationalLike = Fraction | int | float | str


def as_fraction(value: RationalLike) -> Fraction:
    """An exact rational for a rate or time. Common NTSC floats map to their true ratio.

    ``23.976`` means 24000/1001 to every user and to every container, so floats are snapped to the
    closest ratio with a denominator up to 1001 rather than taken as binary approximations.
    """
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    frac = Fraction(value)
    if isinstance(value, float):
        # NTSC rates are written with two or three decimals (23.976, 29.97, 59.94).
        whole = round(value * 1.001)
        ntsc = Fraction(whole * 1000, 1001)
        if whole and abs(value - whole) > 0.005 and abs(frac - ntsc) < Fraction(1, 200):
            return ntsc
        candidate = frac.limit_denominator(1001)
        if abs(candidate - frac) <= Fraction(1, 10**6) * max(Fraction(1), abs(frac)):
            return candidate
    return frac


@dataclass(frozen=True, slots=True)
class OutputFrame:
    """One output frame. Source indices are positions in presentation order (0 = first frame)."""

    index: int
    time: Fraction  # seconds after the first source frame
    left: int
    right: int  # equals `left` when the source frame is used unchanged
    t: float  # 0.0 for unchanged frames, otherwise in (0, 1)

    @property
    def synthesized(self) -> bool:
        return self.left != self.right


@dataclass(frozen=True)
class Timeline:
    """A full plan: every output frame of a render, in order.

    `source_times` are seconds relative to the first source frame. Slice it with `frames[a:b]`
    and ask `source_span(a, b)` which source frames a chunk needs.
    """

    target_fps: Fraction
    duration: Fraction
    source_times: tuple[Fraction, ...]
    frames: tuple[OutputFrame, ...]
    anchors: tuple[int, ...] = field(default=())
    cuts: frozenset[int] = field(default=frozenset())

    def __len__(self) -> int:
        return len(self.frames)

    def head(self, seconds: RationalLike) -> Timeline:
        """The plan of the first `seconds` of output only (a preview): round(seconds x fps)
        frames, halves up, or the whole plan when it is not longer than that.

        The frames are the full plan's own, so a preview looks exactly like the start of the
        full render; the last one is not forced to the clip's last frame (the clip goes on).
        """
        span = as_fraction(seconds)
        if span <= 0:
            raise InvalidInput(f"a preview must last more than 0 seconds, got {float(span):g}")
        count = output_frame_count(span, self.target_fps)
        if count >= len(self.frames):
            return self
        return replace(self, frames=self.frames[:count], duration=count / self.target_fps)

    @property
    def synthesized_count(self) -> int:
        return sum(1 for f in self.frames if f.synthesized)

    def source_span(self, start: int = 0, stop: int | None = None) -> range:
        """Source frame indices needed to render output frames ``[start, stop)``.

        Output frames are monotonic in their sources, so the span is contiguous; a chunk of the
        Ray pipeline decodes exactly this range (it already includes the one-frame halo at each
        end, because a synthesized frame names both of its neighbours).
        """
        stop = len(self.frames) if stop is None else min(stop, len(self.frames))
        if not 0 <= start < stop:
            raise InvalidInput(
                f"output range [{start}, {stop}) is empty or outside 0..{len(self.frames)}"
            )
        first = self.frames[start].left
        last = max(self.frames[stop - 1].right, self.frames[stop - 1].left)
        return range(first, last + 1)


def frame_duration_estimate(times: Sequence[Fraction]) -> Fraction:
    """The typical gap between frames (median), used when the container gives no duration."""
    if len(times) < 2:
        raise InvalidMedia("the video has a single frame; there is nothing to interpolate")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return Fraction(median(gaps))


def output_frame_count(duration: Fraction, target_fps: Fraction) -> int:
    """``round(duration * target_fps)``, halves rounded up, at least 1."""
    exact = duration * target_fps
    return max(1, int((exact + Fraction(1, 2)).__floor__()))


def _validate_times(times: Sequence[Fraction]) -> None:
    for i in range(1, len(times)):
        if times[i] <= times[i - 1]:
            raise InvalidMedia(
                f"source frame {i} is not after frame {i - 1} "
                f"({float(times[i]):.6f} s <= {float(times[i - 1]):.6f} s); "
                "the video's timestamps are broken, re-mux it (e.g. ffmpeg -i in -c copy out.mp4)"
            )


def plan_timeline(
    source_times: Iterable[RationalLike],
    target_fps: RationalLike,
    *,
    duration: RationalLike | None = None,
    anchors: Iterable[int] | None = None,
    cuts: Collection[int] = (),
) -> Timeline:
    """Plan every output frame.

    `source_times`: presentation time of each source frame in order (seconds, any origin; the
    first one becomes 0). `duration`: the clip's length from its first frame (defaults to the
    span of the timestamps plus one typical frame gap). `anchors`: source indices with new
    content, in order, starting with 0 (default: all). `cuts`: anchors that begin a new shot.
    """
    raw = [as_fraction(t) for t in source_times]
    if not raw:
        raise InvalidMedia("the video has no frames")
    origin = raw[0]
    times = [t - origin for t in raw]
    _validate_times(times)
    fps = as_fraction(target_fps)
    if fps <= 0:
        raise InvalidInput(f"target fps must be positive, got {float(fps)}")
    if duration is None:
        span = times[-1] + frame_duration_estimate(times)
    else:
        span = as_fraction(duration)
        if span <= times[-1]:
            # A container duration shorter than the last timestamp is wrong; trust the frames.
            span = times[-1] + frame_duration_estimate(times) if len(times) > 1 else span
    if span <= 0:
        raise InvalidMedia("the video has zero duration")

    anchor_list = sorted(set(anchors)) if anchors is not None else list(range(len(times)))
    if not anchor_list or anchor_list[0] != 0 or anchor_list[-1] >= len(times):
        raise InvalidInput("anchors must start at source frame 0 and stay within the clip")
    cut_set = frozenset(cuts)
    if not cut_set <= set(anchor_list):
        raise InvalidInput("every cut must be an anchor (the first frame of the new shot)")

    anchor_times = [times[i] for i in anchor_list]
    half_tick = Fraction(1, 2) / fps
    count = output_frame_count(span, fps)
    last_anchor = anchor_list[-1]
    frames: list[OutputFrame] = []
    for k in range(count):
        time = k / fps
        # Position of the last anchor at or before `time`.
        pos = bisect.bisect_right(anchor_times, time) - 1
        pos = max(pos, 0)
        left_idx = anchor_list[pos]
        if pos + 1 >= len(anchor_list):
            # At or past the last anchor: hold the last content frame to the end.
            frames.append(OutputFrame(k, time, left_idx, left_idx, 0.0))
            continue
        right_idx = anchor_list[pos + 1]
        t_left, t_right = anchor_times[pos], anchor_times[pos + 1]
        if time - t_left < half_tick:
            frames.append(OutputFrame(k, time, left_idx, left_idx, 0.0))
            continue
        if t_right - time < half_tick:
            frames.append(OutputFrame(k, time, right_idx, right_idx, 0.0))
            continue
        if right_idx in cut_set:
            chosen = _nearest_real_frame(times, left_idx, right_idx, time)
            frames.append(OutputFrame(k, time, chosen, chosen, 0.0))
            continue
        t = (time - t_left) / (t_right - t_left)
        frames.append(OutputFrame(k, time, left_idx, right_idx, float(t)))

    # Rounding the count down can end the output a fraction of a tick before the last source
    # frame; the last real frame must still be shown, so the final output frame takes it.
    final = frames[-1]
    if final.synthesized or final.left != last_anchor:
        frames[-1] = OutputFrame(final.index, final.time, last_anchor, last_anchor, 0.0)

    return Timeline(
        target_fps=fps,
        duration=span,
        source_times=tuple(times),
        frames=tuple(frames),
        anchors=tuple(anchor_list),
        cuts=cut_set,
    )


def _nearest_real_frame(times: Sequence[Fraction], left: int, right: int, time: Fraction) -> int:
    """At a cut, the real frame nearest in time; repeats of `left` count as `left`.

    Repeats between the two anchors still show the old shot, so the old shot lasts until the
    new one's first frame; ties go to the old shot, keeping the cut where the source had it.
    """
    nearest = min(range(left, right + 1), key=lambda i: (abs(times[i] - time), i))
    return right if nearest == right else left
