from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from reframe.engine.timeline import (
    Timeline,
    as_fraction,
    output_frame_count,
    plan_timeline,
)
from reframe.errors import InvalidInput, InvalidMedia


def cfr_times(fps: Fraction, count: int) -> list[Fraction]:
    return [i / fps for i in range(count)]


def at_cut(plan: Timeline, time: Fraction) -> bool:
    """True when `time` lies between a cut and the anchor before it."""
    anchors = plan.anchors
    for before, cut in itertools.pairwise(anchors):
        if cut in plan.cuts and plan.source_times[before] < time < plan.source_times[cut]:
            return True
    return False


def check_invariants(plan: Timeline) -> None:
    """The rules of section 3, checked independently of how the planner computes them."""
    fps = plan.target_fps
    times = plan.source_times
    half = Fraction(1, 2) / fps
    assert len(plan) == output_frame_count(plan.duration, fps)
    assert plan.frames[0].left == plan.frames[0].right == 0
    last = plan.frames[-1]
    assert not last.synthesized
    assert last.left == plan.anchors[-1]
    for k, f in enumerate(plan.frames):
        assert f.index == k
        assert f.time == Fraction(k) / fps
        if f.synthesized:
            assert times[f.left] < f.time < times[f.right]
            expected = (f.time - times[f.left]) / (times[f.right] - times[f.left])
            assert f.t == pytest.approx(float(expected), abs=1e-12)
            # No source frame may sit within half a tick of a synthesized frame.
            assert f.time - times[f.left] >= half
            assert times[f.right] - f.time >= half
        elif k < len(plan) - 1 and f.time <= times[-1] and not at_cut(plan, f.time):
            assert abs(times[f.left] - f.time) < half
    # Monotonic sources: a chunk's source range is contiguous.
    lefts = [f.left for f in plan.frames]
    assert lefts == sorted(lefts)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (Fraction(24), Fraction(60)),
        (Fraction(25), Fraction(60)),
        (Fraction(24000, 1001), Fraction(60)),
        (Fraction(30), Fraction(120)),
        (Fraction(30000, 1001), Fraction(240)),
        (Fraction(60), Fraction(240)),
    ],
)
def test_rate_conversions_obey_the_rules(src: Fraction, dst: Fraction) -> None:
    count = 97
    plan = plan_timeline(cfr_times(src, count), dst)
    check_invariants(plan)
    duration = count / src
    assert len(plan) == int(duration * dst + Fraction(1, 2))  # halves round up
    # Every source frame appears unchanged when an output tick lands on it.
    used = {f.left for f in plan.frames if not f.synthesized}
    for i, t in enumerate(plan.source_times):
        k = round(t * dst)
        if abs(Fraction(k) / dst - t) < Fraction(1, 2) / dst and k < len(plan):
            assert i in used


def test_24_to_60_uses_the_documented_timesteps() -> None:
    plan = plan_timeline(cfr_times(Fraction(24), 48), 60)
    first = plan.frames[:6]
    assert [(f.left, f.right) for f in first] == [(0, 0), (0, 1), (0, 1), (1, 2), (1, 2), (2, 2)]
    assert [round(f.t, 9) for f in first] == [0.0, 0.4, 0.8, 0.2, 0.6, 0.0]
    assert len(plan) == 120
    # Only even source frames land on a 60 fps tick (k = 0, 5, 10, ...): 24 copies, plus the
    # last frame (47, at tick 117.5) held for ticks 118 and 119.
    assert plan.synthesized_count == 120 - 24 - 2


def test_30_to_120_copies_every_fourth_frame() -> None:
    plan = plan_timeline(cfr_times(Fraction(30), 30), 120)
    assert [f.left for f in plan.frames[:4:]] == [0, 0, 0, 0]
    assert [round(f.t, 9) for f in plan.frames[:5]] == [0.0, 0.25, 0.5, 0.75, 0.0]
    assert plan.frames[4].left == 1
    assert len(plan) == 120


def test_29_97_to_240_snaps_only_within_half_a_tick() -> None:
    src = Fraction(30000, 1001)
    plan = plan_timeline(cfr_times(src, 60), 240)
    check_invariants(plan)
    # Source frame 1 is at 1001/30000 s = 8.008 output ticks: output 8 shows it unchanged.
    assert plan.frames[8].left == plan.frames[8].right == 1


def test_variable_frame_rate_uses_real_timestamps() -> None:
    # A screen recording: bursts and pauses, millisecond timestamps.
    ms = [0, 33, 67, 100, 250, 260, 270, 600, 633, 1000]
    times = [Fraction(m, 1000) for m in ms]
    plan = plan_timeline(times, 60, duration=Fraction(1033, 1000))
    check_invariants(plan)
    assert len(plan) == round(Fraction(1033, 1000) * 60)
    # The 150 ms gap between 100 and 250 ms is spanned by frames 3 -> 4 at their real times.
    at_200ms = plan.frames[12]
    assert (at_200ms.left, at_200ms.right) == (3, 4)
    assert at_200ms.t == pytest.approx((0.2 - 0.1) / 0.15)
    # 600 ms falls on frame 7 exactly.
    assert plan.frames[36].left == plan.frames[36].right == 7


def test_origin_is_the_first_frame_not_zero() -> None:
    shifted = [Fraction(7, 5) + i / Fraction(24) for i in range(24)]
    a = plan_timeline(shifted, 60)
    b = plan_timeline(cfr_times(Fraction(24), 24), 60)
    assert a.frames == b.frames


def test_no_drift_over_120_seconds() -> None:
    src = Fraction(24000, 1001)
    count = int(120 * src)  # 2877 frames
    plan = plan_timeline(cfr_times(src, count), 60)
    duration = count / src
    assert abs(Fraction(len(plan)) / 60 - duration) <= Fraction(1, 60)
    check_invariants(plan)
    # The last synthesized frames still sit between the right source frames.
    tail = [f for f in plan.frames if f.synthesized][-1]
    assert plan.source_times[tail.left] < tail.time < plan.source_times[tail.right]


def test_float_rates_mean_their_ntsc_ratio() -> None:
    assert as_fraction(23.976) == Fraction(24000, 1001)
    assert as_fraction(29.97) == Fraction(30000, 1001)
    assert as_fraction(59.94) == Fraction(60000, 1001)
    assert as_fraction(60.0) == 60


def test_anchors_span_duplicates_and_cuts_show_a_real_frame() -> None:
    times = cfr_times(Fraction(30), 12)
    # Frames 1, 3, 5 repeat 0, 2, 4; frame 6 starts a new shot.
    anchors = [0, 2, 4, 6, 7, 8, 9, 10, 11]
    plan = plan_timeline(times, 60, anchors=anchors, cuts={6})
    check_invariants(plan)
    synthesized = [f for f in plan.frames if f.synthesized]
    for f in synthesized:
        assert f.left in anchors
        assert f.right in anchors
        # Nothing is blended across the cut.
        assert not (f.left == 4 and f.right == 6)
    # Between anchors 0 and 2 (0 .. 66.7 ms) outputs at 16.7, 33.3, 50 ms: t = 1/4, 1/2, 3/4.
    assert [(f.left, f.right, f.t) for f in plan.frames[1:4]] == [
        (0, 2, 0.25),
        (0, 2, 0.5),
        (0, 2, 0.75),
    ]
    # Around the cut (frame 4 at 133 ms, repeat 5 at 167 ms, new shot at 200 ms) the old shot
    # lasts through its repeat; at 183 ms (a tie between the repeat and the new shot) too.
    around = {f.index: f.left for f in plan.frames if Fraction(8, 60) <= f.time <= Fraction(1, 5)}
    assert around == {8: 4, 9: 4, 10: 4, 11: 4, 12: 6}


def test_single_frame_and_broken_inputs_fail_clearly() -> None:
    with pytest.raises(InvalidMedia, match="no frames"):
        plan_timeline([], 60)
    with pytest.raises(InvalidMedia, match="single frame"):
        plan_timeline([0], 60)
    with pytest.raises(InvalidMedia, match="timestamps are broken"):
        plan_timeline([0, Fraction(1, 24), Fraction(1, 24)], 60)
    with pytest.raises(InvalidInput, match="positive"):
        plan_timeline(cfr_times(Fraction(24), 4), 0)
    with pytest.raises(InvalidInput, match="cut must be an anchor"):
        plan_timeline(cfr_times(Fraction(24), 4), 60, anchors=[0, 2], cuts={3})


def test_single_frame_with_known_duration_is_held() -> None:
    plan = plan_timeline([0], 60, duration=Fraction(1, 10))
    assert len(plan) == 6
    assert all(f.left == f.right == 0 for f in plan.frames)


def test_source_span_covers_a_chunk() -> None:
    plan = plan_timeline(cfr_times(Fraction(24), 48), 60)
    assert plan.source_span(0, 1) == range(0, 1)
    assert plan.source_span(1, 3) == range(0, 2)
    span = plan.source_span(30, 60)
    needed = {i for f in plan.frames[30:60] for i in (f.left, f.right)}
    assert set(span) == needed | set(range(min(needed), max(needed) + 1))
    with pytest.raises(InvalidInput):
        plan.source_span(5, 5)


# --- a preview's plan (Timeline.head) ---------------------------------------------------------


def test_head_keeps_the_first_round_seconds_x_fps_frames_of_the_full_plan() -> None:
    full = plan_timeline(cfr_times(Fraction(24), 48), 60)  # 2 s at 24 fps -> 120 frames at 60 fps
    head = full.head(1.25)
    assert len(head) == 75  # round(1.25 x 60)
    assert head.frames == full.frames[:75]  # the same frames as the start of the full render
    assert head.duration == Fraction(75, 60)
    assert head.target_fps == full.target_fps
    assert len(full.head(Fraction(1, 120))) == 1  # half a frame rounds up
    assert full.head(5) is full  # a clip shorter than the preview is previewed whole


def test_head_refuses_a_zero_length_preview() -> None:
    full = plan_timeline(cfr_times(Fraction(24), 24), 48)
    with pytest.raises(InvalidInput):
        full.head(0)
