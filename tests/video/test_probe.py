"""probe_video on real clips written by PyAV, and on hostile or broken inputs."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from reframe.errors import InvalidMedia
from reframe.video.probe import ProbeLimits, VideoProbe, probe_video
from tests.fixtures.media import make_clip, moving_square_frames, write_video

LIMITS = ProbeLimits(timeout_sec=20.0)


@pytest.mark.parametrize(
    ("fps", "fraction", "frames", "size"),
    [
        (24, "24/1", 24, (128, 96)),
        (Fraction(24000, 1001), "24000/1001", 24, (128, 96)),
        (60, "60/1", 30, (64, 48)),
        (Fraction(30000, 1001), "30000/1001", 15, (176, 144)),
    ],
)
def test_probes_ordinary_clips(
    tmp_path: Path,
    fps: int | Fraction,
    fraction: str,
    frames: int,
    size: tuple[int, int],
) -> None:
    width, height = size
    clip = make_clip(tmp_path / "clip.mp4", frames=frames, fps=fps, width=width, height=height)
    probe = probe_video(clip, LIMITS)
    assert probe.fps_fraction == fraction
    assert probe.fps == pytest.approx(float(Fraction(fraction)))
    assert probe.frame_count == frames
    assert probe.duration_sec == pytest.approx(frames / float(fps), abs=1e-3)
    assert (probe.width, probe.height) == (width, height)
    assert probe.codec == "h264"
    assert probe.pix_fmt == "yuv420p"
    assert probe.has_audio is False
    assert probe.audio_codec is None
    assert probe.rotation == 0
    assert "mp4" in probe.container
    assert probe.bit_rate is not None
    assert probe.bit_rate > 0


def test_probes_audio_track(tiny_clip_with_audio: Path) -> None:
    probe = probe_video(tiny_clip_with_audio, LIMITS)
    assert probe.has_audio is True
    assert probe.audio_codec == "aac"
    assert probe.frame_count == 24


def test_odd_sizes_in_other_containers(tmp_path: Path) -> None:
    # 4:4:4 lets x264 take odd dimensions; Matroska checks that the container is not assumed.
    clip = write_video(
        tmp_path / "odd.mkv",
        moving_square_frames(12, width=129, height=97),
        fps=25,
        pix_fmt="yuv444p",
    )
    probe = probe_video(clip, LIMITS)
    assert (probe.width, probe.height) == (129, 97)
    assert probe.pix_fmt == "yuv444p"
    assert probe.frame_count == 12
    assert probe.fps_fraction == "25/1"
    assert probe.container == "matroska,webm"


def test_rotation_and_colour_tags(tmp_path: Path) -> None:
    path = tmp_path / "tagged.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.set_display_rotation(90)
        ctx = stream.codec_context
        ctx.color_range = 1  # tv
        ctx.color_primaries = 1  # bt709
        ctx.color_trc = 1  # bt709
        ctx.colorspace = 1  # bt709
        for i, rgb in enumerate(moving_square_frames(6, width=64, height=48)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    probe = probe_video(path, LIMITS)
    assert probe.rotation == 90
    assert (probe.width, probe.height) == (64, 48), "stored size, before rotation"
    assert probe.color_range == "tv"
    assert probe.color_primaries == "bt709"
    assert probe.color_transfer == "bt709"
    assert probe.color_matrix == "bt709"


def test_to_dict_is_json_and_round_trips(tiny_clip: Path) -> None:
    probe = probe_video(tiny_clip, LIMITS)
    data = json.loads(json.dumps(probe.to_dict()))
    assert data["fps_fraction"] == "24/1"
    assert VideoProbe.from_dict(data) == probe


def expect_invalid(path: Path, match: str, limits: ProbeLimits = LIMITS) -> str:
    with pytest.raises(InvalidMedia, match=match) as info:
        probe_video(path, limits)
    message = info.value.message
    assert str(path.parent) not in message, "server paths never reach the user"
    return message


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    expect_invalid(path, "not a video file we can read")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("hello, this is not a video\n" * 100)
    expect_invalid(path, "not a video file")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    expect_invalid(empty, "empty")
    expect_invalid(tmp_path / "missing.mp4", "does not exist")
    expect_invalid(tmp_path, "not a regular file")


def test_truncated_mp4_with_index_at_the_end(tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.mp4", frames=48)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    expect_invalid(cut, "truncated MP4|damaged")


def test_truncated_mp4_with_index_at_the_start(tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.mp4", frames=48)
    faststart = tmp_path / "faststart.mp4"
    with (
        av.open(str(full)) as src,
        av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst,
    ):
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is None:
                continue
            packet.stream = out
            dst.mux(packet)
    assert probe_video(faststart, LIMITS).frame_count == 48
    data = faststart.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    message = expect_invalid(cut, "truncated")
    assert "lists 48 frames" in message


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "mono"
        t = np.arange(48000, dtype=np.float32) / 48000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate = 48000
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    expect_invalid(path, r"only audio \(aac\)")


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_zero_frame_video(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"zero.{suffix}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    assert path.stat().st_size > 0
    expect_invalid(path, "no video stream|no frames|ends before any video data")


def test_dimensions_over_the_pixel_limit(tiny_clip: Path) -> None:
    message = expect_invalid(tiny_clip, "larger than", ProbeLimits(max_pixels=128 * 96 - 1))
    assert "128x96" in message
    assert probe_video(tiny_clip, ProbeLimits(max_pixels=128 * 96)).width == 128


def test_absurd_dimensions_in_a_header_are_refused_before_decoding(tmp_path: Path) -> None:
    # A few bytes claiming a 16000x16000 picture: one decoded frame would need 384 MB.
    path = tmp_path / "huge.y4m"
    path.write_bytes(b"YUV4MPEG2 W16000 H16000 F24:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\0" * 4096)
    message = expect_invalid(path, "16000x16000")
    assert "scale it down" in message
    # FFmpeg itself refuses sizes past its own sanity bound; that still reads as a clear error.
    path.write_bytes(b"YUV4MPEG2 W60000 H60000 F24:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\0" * 4096)
    expect_invalid(path, "60000x60000 is invalid")


def test_one_side_over_the_dimension_limit(tmp_path: Path) -> None:
    path = tmp_path / "strip.y4m"
    path.write_bytes(b"YUV4MPEG2 W20000 H2 F24:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\0" * 60000)
    expect_invalid(path, "20000x2")


def test_too_many_frames(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=24, width=64, height=48)
    expect_invalid(clip, "more than 10 frames", ProbeLimits(max_frames=10))
    assert probe_video(clip, ProbeLimits(max_frames=24)).frame_count == 24


def test_time_limit_kills_the_probe(tiny_clip: Path) -> None:
    # Starting Python alone takes longer than 10 ms, so this always hits the wall-clock limit.
    message = expect_invalid(tiny_clip, "longer than", ProbeLimits(timeout_sec=0.01))
    assert "0.01 s" in message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/a.ts\n"),
        ("list.ffconcat", "ffconcat version 1.0\nfile '/etc/hostname'\n"),
        ("list.sdp", "v=0\nc=IN IP4 127.0.0.1\nm=video 9 RTP/AVP 96\na=rtpmap:96 H264/90000\n"),
    ],
)
def test_playlists_and_network_descriptions_are_not_followed(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    expect_invalid(path, "not a video file")


def test_the_probe_child_gets_no_credentials(
    tiny_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's environment is built from scratch, so secrets in ours cannot leak to it."""
    import subprocess

    seen: dict[str, str] = {}
    real_run = subprocess.run

    def spy(*args: object, **kwargs: object) -> object:
        seen.update(kwargs["env"])  # type: ignore[arg-type]
        return real_run(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setenv("REFRAME_SECRET_KEY", "top-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    monkeypatch.setattr(subprocess, "run", spy)
    assert probe_video(tiny_clip, LIMITS).frame_count == 24
    assert "REFRAME_SECRET_KEY" not in seen
    assert "AWS_SECRET_ACCESS_KEY" not in seen
    assert not any("secret" in value for value in seen.values())
    assert os.environ["REFRAME_SECRET_KEY"] == "top-secret"
