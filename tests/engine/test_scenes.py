from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from reframe.engine.render_core import render_file
from reframe.engine.scenes import (
    SceneSettings,
    analysis_size,
    analyze_video,
    build_analysis,
)
from reframe.errors import InvalidInput
from reframe.video.decode import iter_frames
from reframe.video.encode import EncodeOptions
from tests.fixtures.media import moving_square_frames
from tests.fixtures.render import (
    BlendInterpolator,
    cut_frames,
    lossless,
    psnr,
    repeated_frames,
)


def test_a_hard_cut_is_found_and_motion_is_not(tmp_path: Path) -> None:
    clip = lossless(tmp_path / "cut.mp4", cut_frames(8, 8))
    analysis = analyze_video(clip)
    assert analysis.cuts == {8}
    assert analysis.cut_scores[8] > 0.4
    assert max(s for i, s in enumerate(analysis.cut_scores) if i != 8) < 0.3
    assert analysis.duplicates == frozenset()
    assert analysis.anchors == tuple(range(16))


def test_fast_motion_is_not_a_cut(tmp_path: Path) -> None:
    clip = lossless(
        tmp_path / "fast.mp4", moving_square_frames(10, speed_px=8, width=96, height=64)
    )
    assert analyze_video(clip).cuts == frozenset()


def test_every_frame_at_a_cut_is_a_real_frame(tmp_path: Path) -> None:
    """Issue 3 §4: each synthesized frame at the cut is >= 35 dB to one of its neighbours."""
    source = cut_frames(8, 8)
    clip = lossless(tmp_path / "cut.mp4", source)
    out = tmp_path / "out.mp4"
    render_file(clip, out, 60, BlendInterpolator(), encode=EncodeOptions(crf=0))
    rendered = [f.rgb for f in iter_frames(out)]
    before, after = source[7], source[8]
    # Output frames between the last frame of shot A (7/24 s) and the first of B (8/24 s).
    between = [rendered[k] for k in range(len(rendered)) if 7 / 24 < k / 60 < 8 / 24]
    assert between
    for frame in between:
        assert max(psnr(frame, before), psnr(frame, after)) >= 35


def test_without_detection_the_cut_is_ghosted(tmp_path: Path) -> None:
    """The check above can fail: with detection off the same render blends the two shots."""
    source = cut_frames(8, 8)
    clip = lossless(tmp_path / "cut.mp4", source)
    out = tmp_path / "out.mp4"
    settings = SceneSettings(detect_cuts=False)
    render_file(clip, out, 60, BlendInterpolator(), encode=EncodeOptions(crf=0), scenes=settings)
    rendered = [f.rgb for f in iter_frames(out)]
    between = [rendered[k] for k in range(len(rendered)) if 7 / 24 < k / 60 < 8 / 24]
    assert any(max(psnr(f, source[7]), psnr(f, source[8])) < 35 for f in between)


def test_repeated_frames_become_one_anchor(tmp_path: Path) -> None:
    clip = lossless(tmp_path / "dup.mp4", repeated_frames(8, 2), fps=30)
    analysis = analyze_video(clip)
    assert analysis.duplicates == frozenset(range(1, 16, 2))
    assert analysis.anchors == tuple(range(0, 16, 2))
    assert analysis.cuts == frozenset()


def test_a_long_pause_keeps_its_last_frame() -> None:
    # Frames: a moving part, then frame 3 held for 6 frames (a real pause), then motion again.
    n = 12
    pts = list(range(n))
    times = [Fraction(i, 30) for i in range(n)]
    mads = [0.0] + [5.0] * n
    maxes = [0.0] + [40.0] * n
    for i in range(4, 9):  # frames 4..8 repeat frame 3
        mads[i], maxes[i] = 0.01, 0.5
    scores = [0.0] + [0.05] * (n - 1)
    result = build_analysis(pts, times, scores, mads[:n], maxes[:n], SceneSettings())
    assert result.duplicates == frozenset(range(4, 9))
    assert result.anchors == (0, 1, 2, 3, 8, 9, 10, 11)
    short = SceneSettings(max_duplicate_run=8)
    assert build_analysis(pts, times, scores, mads[:n], maxes[:n], short).anchors == (
        0,
        1,
        2,
        3,
        9,
        10,
        11,
    )


def test_thresholds_are_tunable_and_checked(tmp_path: Path) -> None:
    clip = lossless(tmp_path / "cut.mp4", cut_frames(6, 6))
    score = analyze_video(clip).cut_scores[6]
    assert analyze_video(clip, SceneSettings(cut_threshold=min(1.0, score + 0.01))).cuts == set()
    off = analyze_video(clip, SceneSettings(detect_cuts=False, detect_duplicates=False))
    assert off.cuts == frozenset()
    assert off.anchors == tuple(range(12))
    with pytest.raises(InvalidInput, match="cut threshold"):
        SceneSettings(cut_threshold=0)
    with pytest.raises(InvalidInput, match="max_duplicate_run"):
        SceneSettings(max_duplicate_run=1)


def test_analysis_size_keeps_aspect_and_stays_even() -> None:
    assert analysis_size(1920, 1080) == (128, 72)
    assert analysis_size(64, 48) == (64, 48)
    w, h = analysis_size(1279, 719)
    assert w % 2 == 0
    assert h % 2 == 0
