"""The probe measures a source's frame rate and length from its real timestamps.

Phones record variable frame rates (jittered intervals, real dropouts) and screen recorders
write Matroska without a default frame duration, whose only "rate" FFmpeg can guess is the 1 ms
time base (1000 fps). The header's rate and duration are hints; what the frames say wins.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from reframe.errors import InvalidMedia
from reframe.video.probe import ProbeLimits, probe_video
from tests.fixtures.media import moving_square_frames, write_video
from tests.fixtures.sources import (
    header_says_one_second_clip,
    one_frame_clip,
    patch_segment_duration,
    phone_times,
    segment_duration,
    strip_default_duration,
    undecodable_clip,
    unknown_codec_clip,
    write_phone_clip,
    zero_duration_clip,
)

LIMITS = ProbeLimits(timeout_sec=20.0)
CONTAINERS = ["mp4", "mov", "mkv", "webm"]


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_variable_rate_is_the_mean_of_the_real_timestamps(tmp_path: Path, suffix: str) -> None:
    times = phone_times(6.0, gaps=((0.3, 0.25), (0.7, 0.5)))
    clip = write_phone_clip(tmp_path / f"phone.{suffix}", times)
    if suffix in ("mkv", "webm"):
        strip_default_duration(clip.path)  # as screen recorders write it
    probe = probe_video(clip.path, LIMITS)
    assert clip.mean_rate < 27  # the dropouts pull the mean well below the declared 30
    assert probe.fps == pytest.approx(clip.mean_rate, rel=0.01)
    assert float(Fraction(probe.fps_fraction)) == pytest.approx(probe.fps)
    assert probe.variable_frame_rate is True
    assert probe.frame_count == len(clip.times)
    span = float(clip.times[-1] - clip.times[0])
    assert span <= probe.duration_sec <= span + 0.1


def test_screen_recorder_matroska_is_not_reported_at_its_time_base(tmp_path: Path) -> None:
    """The reported bug: no DefaultDuration, and the probe said 1000 fps."""
    clip = write_phone_clip(tmp_path / "screen.mkv", phone_times(4.0, fps=30, jitter=0.4))
    strip_default_duration(clip.path)
    with av.open(str(clip.path)) as container:
        assert container.streams.video[0].guessed_rate == 1000  # what FFmpeg guesses
    probe = probe_video(clip.path, LIMITS)
    assert probe.fps == pytest.approx(clip.mean_rate, rel=0.01)
    assert probe.header_fps is None  # a time-base guess is no declared rate


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize(
    ("rate", "fraction"), [(Fraction(30000, 1001), "30000/1001"), (Fraction(25), "25/1")]
)
def test_constant_rate_keeps_its_exact_ratio(
    tmp_path: Path, suffix: str, rate: Fraction, fraction: str
) -> None:
    # Timestamps rounded to the container's clock (1 ms in Matroska) are still constant rate.
    times = [float(i / rate) for i in range(60)]
    clip = write_phone_clip(tmp_path / f"cfr.{suffix}", times, nominal_fps=round(rate))
    if suffix in ("mkv", "webm"):
        strip_default_duration(clip.path)
    probe = probe_video(clip.path, LIMITS)
    assert probe.fps_fraction == fraction
    assert probe.variable_frame_rate is False
    assert probe.duration_sec == pytest.approx(60 / float(rate), abs=2e-3)


def test_duration_patched_short_in_the_header_is_not_believed(tmp_path: Path) -> None:
    """Issue 12, item 2: 240 frames at 24 fps with a Segment Duration rewritten to 1.0 s must
    price and count as 10 s, not 1 s."""
    clip = header_says_one_second_clip(tmp_path / "long.mkv")
    assert segment_duration(clip) == 1.0
    with av.open(str(clip)) as container:
        assert container.duration == 1_000_000  # FFmpeg believes the header
    probe = probe_video(clip, LIMITS)
    assert probe.frame_count == 240
    assert probe.duration_sec == pytest.approx(10.0, abs=1e-3)
    assert probe.fps_fraction == "24/1"


def test_duration_in_the_header_longer_than_the_frames_still_counts(tmp_path: Path) -> None:
    # The header is a floor, not only a hint: audio or a held last frame can run past the
    # last video timestamp, and the render lasts as long as the header says.
    clip = write_video(tmp_path / "held.mkv", moving_square_frames(24, width=64, height=48))
    patch_segment_duration(clip, 3.0)
    probe = probe_video(clip, LIMITS)
    assert probe.duration_sec == pytest.approx(3.0)
    assert probe.fps_fraction == "24/1"


def _message(path: Path) -> str:
    with pytest.raises(InvalidMedia) as info:
        probe_video(path, LIMITS)
    message = info.value.message
    assert str(path.parent) not in message
    return message


def test_a_single_frame_is_refused(tmp_path: Path) -> None:
    assert "single frame" in _message(one_frame_clip(tmp_path / "still.mp4"))


@pytest.mark.parametrize("strip", [False, True])
def test_frames_that_all_share_one_timestamp_have_zero_duration(
    tmp_path: Path, strip: bool
) -> None:
    clip = zero_duration_clip(tmp_path / "zero.mkv")
    if strip:
        strip_default_duration(clip)
    message = _message(clip)
    assert "zero duration" in message
    assert "same timestamp" in message


def test_an_unknown_video_codec_is_a_clear_refusal(tmp_path: Path) -> None:
    """The child used to crash on a stream FFmpeg has no decoder for (a traceback, a 500)."""
    message = _message(unknown_codec_clip(tmp_path / "odd.mkv"))
    assert "codec" in message
    assert "Traceback" not in message


def test_a_video_stream_whose_packets_do_not_decode_is_refused(tmp_path: Path) -> None:
    assert "could be decoded" in _message(undecodable_clip(tmp_path / "garbage.mkv"))
