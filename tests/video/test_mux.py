"""Stitching segments by copying packets: frames, timestamps, audio, refusals."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from reframe.errors import RenderError
from reframe.video.decode import RANGE_LIMITED, ColorInfo
from reframe.video.mux import Segment, stitch_segments
from tests.fixtures.media import make_clip, make_pcm_clip, moving_square_frames, sound_onset

FPS = Fraction(60)


def encode(path: Path, frames: list[np.ndarray], options: dict[str, str]) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = options
        stream.codec_context.time_base = 1 / FPS
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, 1 / FPS
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode(path: Path) -> list[tuple[Fraction, np.ndarray]]:
    import av

    with av.open(str(path)) as container:
        return [
            (Fraction(f.pts) * f.time_base, f.to_ndarray(format="rgb24"))
            for f in container.decode(video=0)
        ]


def split(tmp_path: Path, frames: list[np.ndarray], bounds: list[int], options: dict[str, str]):
    return [
        Segment(
            encode(tmp_path / f"seg{n}.mp4", frames[a:b], options),
            start_frame=a,
            frames=b - a,
        )
        for n, (a, b) in enumerate(itertools.pairwise(bounds))
    ]


LOSSLESS = {"preset": "ultrafast", "qp": "0"}
B_FRAMES = {"preset": "medium", "crf": "18"}


def test_lossless_segments_stitch_to_the_single_file(tmp_path: Path) -> None:
    frames = moving_square_frames(50, width=96, height=64)
    single = decode(encode(tmp_path / "single.mp4", frames, LOSSLESS))
    segments = split(tmp_path, frames, [0, 17, 35, 50], LOSSLESS)
    result = stitch_segments(segments, tmp_path / "out.mp4", frame_rate=FPS)
    assert result.frames == 50
    stitched = decode(tmp_path / "out.mp4")
    assert (
        [t for t, _ in stitched] == [t for t, _ in single] == [Fraction(i, 60) for i in range(50)]
    )
    for (_, a), (_, b) in zip(stitched, single, strict=True):
        assert np.array_equal(a, b)


def test_b_frame_segments_keep_their_decoded_pixels_and_timestamps(tmp_path: Path) -> None:
    frames = moving_square_frames(40, width=96, height=64)
    segments = split(tmp_path, frames, [0, 13, 40], B_FRAMES)
    expected = [decoded for s in segments for decoded in decode(s.path)]
    stitch_segments(segments, tmp_path / "out.mp4", frame_rate=FPS)
    stitched = decode(tmp_path / "out.mp4")
    assert [t for t, _ in stitched] == [Fraction(i, 60) for i in range(40)]
    for (_, a), (_, b) in zip(stitched, expected, strict=True):
        assert np.array_equal(a, b)  # copied, never re-encoded


def test_source_audio_and_colour_tags_are_written(tmp_path: Path) -> None:
    import av

    source = make_clip(tmp_path / "src.mp4", frames=24, audio=True)
    frames = moving_square_frames(60, width=96, height=64)
    segments = split(tmp_path, frames, [0, 30, 60], LOSSLESS)
    color = ColorInfo(range=RANGE_LIMITED, primaries=1, transfer=1, matrix=1)
    result = stitch_segments(
        segments, tmp_path / "out.mp4", frame_rate=FPS, audio_source=source, color=color
    )
    assert result.audio_packets > 0
    with av.open(str(tmp_path / "out.mp4")) as out:
        assert out.streams.audio[0].codec_context.name == "aac"
        video = out.streams.video[0]
        frame = next(out.decode(video))
        assert (int(frame.color_primaries), int(frame.color_trc), int(frame.colorspace)) == (
            1,
            1,
            1,
        )
        audio_seconds = float(out.streams.audio[0].duration * out.streams.audio[0].time_base)
        assert audio_seconds == pytest.approx(1.0, abs=0.05)


def test_gaps_and_wrong_order_are_refused(tmp_path: Path) -> None:
    frames = moving_square_frames(20, width=64, height=48)
    a, b = split(tmp_path, frames, [0, 10, 20], LOSSLESS)
    with pytest.raises(RenderError, match="out of order"):
        stitch_segments([b, a], tmp_path / "out.mp4", frame_rate=FPS)
    with pytest.raises(RenderError, match="holds 10 frames, the plan says 11"):
        stitch_segments([a, Segment(b.path, 10, 11)], tmp_path / "out.mp4", frame_rate=FPS)


def test_segments_from_different_encoders_are_refused(tmp_path: Path) -> None:
    frames = moving_square_frames(20, width=64, height=48)
    a = Segment(encode(tmp_path / "a.mp4", frames[:10], LOSSLESS), 0, 10)
    b = Segment(encode(tmp_path / "b.mp4", frames[10:], B_FRAMES), 10, 10)
    with pytest.raises(RenderError, match="encoded differently"):
        stitch_segments([a, b], tmp_path / "out.mp4", frame_rate=FPS)


def test_audio_mp4_cannot_hold_is_reencoded_in_step(tmp_path: Path) -> None:
    import av

    # PCM, as many cameras record it: an MP4 output needs it re-encoded, at its own offset.
    picture = moving_square_frames(24, width=64, height=48)
    source = make_pcm_clip(tmp_path / "camera.mkv", picture, audio_delay_samples=4000)
    segments = split(tmp_path, moving_square_frames(60, width=96, height=64), [0, 30, 60], LOSSLESS)
    out = tmp_path / "out.mp4"
    result = stitch_segments(segments, out, frame_rate=FPS, audio_source=source)
    assert result.frames == 60
    assert result.audio_packets > 0
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        samples = sum(f.samples for f in container.decode(stream))
    assert abs(samples - 8000) < 2048  # the half second of sound, give or take AAC framing
    assert sound_onset(out) == pytest.approx(0.25, abs=0.002)  # heard 0.25 s in, as recorded
