from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from reframe.errors import InvalidMedia
from reframe.video.decode import RANGE_FULL, iter_frames, read_video_info
from tests.fixtures.media import make_clip, moving_square_frames, write_video


def lossless_clip(path: Path, count: int = 12, **kwargs: object) -> tuple[Path, list[np.ndarray]]:
    frames = moving_square_frames(count, width=96, height=64)
    write_video(
        path,
        frames,
        codec="libx264rgb",
        pix_fmt="rgb24",
        options={"crf": "0", "preset": "ultrafast"},
        **kwargs,  # type: ignore[arg-type]
    )
    return path, frames


def test_decoded_pixels_are_exactly_what_was_encoded(tmp_path: Path) -> None:
    path, frames = lossless_clip(tmp_path / "rgb.mp4")
    decoded = list(iter_frames(path))
    assert [d.index for d in decoded] == list(range(len(frames)))
    for d, f in zip(decoded, frames, strict=True):
        np.testing.assert_array_equal(d.rgb, f)


def test_cfr_timestamps_are_exact(tiny_clip: Path) -> None:
    decoded = list(iter_frames(tiny_clip))
    assert len(decoded) == 24
    assert [d.time - decoded[0].time for d in decoded] == [Fraction(i, 24) for i in range(24)]


def test_variable_frame_rate_keeps_real_timestamps(tmp_path: Path) -> None:
    pts_ms = [0, 40, 80, 300, 310, 320, 700, 740]
    path = write_video(
        tmp_path / "vfr.mkv",
        moving_square_frames(len(pts_ms), width=64, height=48),
        fps=25,
        pts=pts_ms,
        time_base=Fraction(1, 1000),
    )
    times = [d.time for d in iter_frames(path)]
    assert [t - times[0] for t in times] == [Fraction(p, 1000) for p in pts_ms]


def test_seeking_into_the_middle_matches_sequential_decoding(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "gop.mp4", frames=40, options={"g": "8", "preset": "ultrafast"})
    everything = list(iter_frames(path))
    pts = [d.pts for d in everything]
    chunk = list(iter_frames(path, start=21, stop=30, frame_pts=pts))
    assert [c.index for c in chunk] == list(range(21, 30))
    for c in chunk:
        np.testing.assert_array_equal(c.rgb, everything[c.index].rgb)
    # Without pts a mid-clip start still works (by decoding from the top).
    slow = list(iter_frames(path, start=35))
    assert [s.index for s in slow] == list(range(35, 40))


def test_small_gray_frames_for_analysis(tiny_clip: Path) -> None:
    small = next(iter_frames(tiny_clip, size=(32, 24), gray=True))
    assert small.rgb.shape == (24, 32, 1)
    assert small.rgb.dtype == np.uint8


def test_video_info(tiny_clip_with_audio: Path, tmp_path: Path) -> None:
    info = read_video_info(tiny_clip_with_audio)
    assert (info.width, info.height) == (128, 96)
    assert info.average_rate == 24
    assert info.audio_codec == "aac"
    assert info.duration is not None
    assert abs(info.duration - 1) < Fraction(1, 20)
    assert info.rotation == 0


def test_full_range_source_decodes_to_the_same_colours(tmp_path: Path) -> None:
    """A full-range stream must not be read as limited range (that would crush blacks)."""
    frames = moving_square_frames(4, width=64, height=48)
    path = write_video(
        tmp_path / "full.mp4",
        frames,
        pix_fmt="yuvj444p",
        options={"crf": "0", "preset": "ultrafast"},
    )
    info = read_video_info(path)
    assert info.color.range == RANGE_FULL
    decoded = next(iter_frames(path)).rgb.astype(int)
    # 8-bit YUV rounding only: a few code values, not the ~15 % of a range error.
    assert np.abs(decoded - frames[0].astype(int)).max() <= 4


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_not_a_video_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(InvalidMedia, match=r"fake\.mp4"):
        read_video_info(path)


def test_missing_file_and_directory_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidMedia, match="no such file"):
        list(iter_frames(tmp_path / "missing.mp4"))
    with pytest.raises(InvalidMedia, match="directory"):
        read_video_info(tmp_path)


def test_audio_only_file_is_rejected(tmp_path: Path) -> None:
    import av

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 48000
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(InvalidMedia, match="no video stream"):
        read_video_info(path)
