"""Renders follow the source's real timeline: phone-style variable frame rates in MP4, MOV,
MKV and WebM come out at a constant 60 fps with round(duration x 60) frames, pictures that show
the source at the right moment (no drift), and audio where it was (issue 15).

The source's picture encodes time (tests/fixtures/sources.py): the square's position at any
moment is known, and a linear blend moves it linearly, so each output frame can be checked
against the source's real timestamps with the cheap blend interpolator standing in for RIFE.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from reframe.engine.render_core import plan_render, render_file
from reframe.video.decode import iter_frames
from reframe.video.encode import EncodeOptions
from reframe.video.probe import ProbeLimits, probe_video
from tests.fixtures.render import BlendInterpolator
from tests.fixtures.sources import (
    PhoneClip,
    beep_onsets,
    phone_times,
    strip_default_duration,
    timeline_errors,
    write_phone_clip,
)

CONTAINERS = ["mp4", "mov", "mkv", "webm"]
# Phones start the picture a moment after the sound.
VIDEO_OFFSET = 0.2


def _phone_clip(path: Path, seconds: float) -> PhoneClip:
    times = [VIDEO_OFFSET + t for t in phone_times(seconds, gaps=((0.3, 0.25), (0.65, 0.5)))]
    beeps = [1.0, seconds / 2, seconds - 1.0]
    clip = write_phone_clip(path, times, audio_beeps=beeps, audio_seconds=seconds + VIDEO_OFFSET)
    if path.suffix in (".mkv", ".webm"):
        strip_default_duration(path)  # no DefaultDuration: FFmpeg's guess is 1000 fps
    return clip


def _render_and_check(clip: PhoneClip, out: Path) -> list[float]:
    """Render at 60 fps; check length, timestamps and audio; return the timing errors."""
    probe = probe_video(clip.path, ProbeLimits(timeout_sec=60))
    assert probe.variable_frame_rate is True
    assert probe.fps == pytest.approx(clip.mean_rate, rel=0.01)
    plan = plan_render(clip.path, 60)
    # The renderer measures the rate and length exactly as the probe that priced the clip.
    assert float(plan.source_fps) == pytest.approx(probe.fps, rel=1e-9)
    assert float(plan.timeline.duration) == pytest.approx(probe.duration_sec, abs=1e-6)

    report = render_file(
        clip.path, out, 60, BlendInterpolator(), encode=EncodeOptions(preset="ultrafast"), plan=plan
    )
    assert report.audio == "copied"
    decoded = list(iter_frames(out))
    assert len(decoded) == round(probe.duration_sec * 60) == report.frames
    first = decoded[0].time
    # A constant 60 fps, starting where the source's picture starts.
    assert [d.time - first for d in decoded] == [Fraction(k, 60) for k in range(len(decoded))]
    assert abs(first - clip.times[0]) <= Fraction(1, 1000)

    # Audio: every tone burst keeps its distance from the first picture (within one frame).
    source_beeps = [b - float(clip.times[0]) for b in beep_onsets(clip.path)]
    output_beeps = [b - float(first) for b in beep_onsets(out)]
    assert len(source_beeps) == len(clip.audio_beeps)
    assert output_beeps == pytest.approx(source_beeps, abs=1 / 60)
    return timeline_errors(clip, [(d.time - first, d.rgb) for d in decoded])


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_a_phone_clip_renders_on_its_real_timeline(tmp_path: Path, suffix: str) -> None:
    clip = _phone_clip(tmp_path / f"phone.{suffix}", 4.0)
    errors = _render_and_check(clip, tmp_path / "smooth.mp4")
    assert len(errors) > 100
    assert max(abs(e) for e in errors) <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("suffix", CONTAINERS)
def test_no_drift_over_a_120_second_phone_clip(tmp_path: Path, suffix: str) -> None:
    clip = _phone_clip(tmp_path / f"long.{suffix}", 119.5)
    errors = _render_and_check(clip, tmp_path / "smooth.mp4")
    assert len(errors) > 5000
    late = errors[-500:]
    # Within one output frame everywhere, and no trend: the last seconds are as close as any.
    assert max(abs(e) for e in errors) <= 1.0
    assert abs(sum(late) / len(late)) <= 0.25
