from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from reframe.errors import InvalidInput, RenderError
from reframe.video.decode import ColorInfo, iter_frames, read_video_info
from reframe.video.encode import (
    EncodeOptions,
    VideoWriter,
    apply_watermark,
    watermark_box,
)
from tests.fixtures.media import make_pcm_clip, moving_square_frames, sound_onset


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def encode(
    path: Path,
    frames: list[np.ndarray],
    fps: Fraction = Fraction(60),
    **kwargs: object,
) -> Path:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, width=width, height=height, fps=fps, **kwargs) as writer:  # type: ignore[arg-type]
        for f in frames:
            writer.write(f)
    return path


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_crf_0_is_lossless_rgb(tmp_path: Path, codec: str) -> None:
    frames = moving_square_frames(6, width=65, height=49)  # odd sizes stay exact losslessly
    path = encode(tmp_path / "lossless.mp4", frames, options=EncodeOptions(codec=codec, crf=0))  # type: ignore[arg-type]
    decoded = list(iter_frames(path))
    assert len(decoded) == len(frames)
    for d, f in zip(decoded, frames, strict=True):
        np.testing.assert_array_equal(d.rgb, f)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_lossy_output_timing_and_quality(tmp_path: Path, codec: str) -> None:
    frames = moving_square_frames(20, width=128, height=96)
    fps = Fraction(60000, 1001)
    path = encode(tmp_path / "out.mp4", frames, fps=fps, options=EncodeOptions(codec=codec))  # type: ignore[arg-type]
    info = read_video_info(path)
    assert info.codec == codec
    assert info.pix_fmt == "yuv420p"
    assert info.average_rate == fps
    decoded = list(iter_frames(path))
    assert [d.time - decoded[0].time for d in decoded] == [k / fps for k in range(20)]
    assert min(psnr(d.rgb, f) for d, f in zip(decoded, frames, strict=True)) > 34


def test_odd_dimensions_are_padded_to_even_for_420(tmp_path: Path) -> None:
    frames = moving_square_frames(4, width=67, height=51)
    path = encode(tmp_path / "odd.mp4", frames)
    info = read_video_info(path)
    assert (info.width, info.height) == (68, 52)
    first = next(iter_frames(path)).rgb
    assert psnr(first[:51, :67], frames[0]) > 30


def test_colour_metadata_and_rotation_are_kept(tmp_path: Path) -> None:
    color = ColorInfo(range=2, primaries=1, transfer=1, matrix=1)
    frames = moving_square_frames(4, width=64, height=48)
    path = encode(tmp_path / "tagged.mp4", frames, color=color, rotation=90)
    info = read_video_info(path)
    assert info.color == color
    assert info.rotation == 90
    # The same matrix and range are used both ways, so colours survive.
    assert psnr(next(iter_frames(path)).rgb, frames[0]) > 34


def test_audio_is_copied_packet_for_packet(tiny_clip_with_audio: Path, tmp_path: Path) -> None:
    frames = [d.rgb for d in iter_frames(tiny_clip_with_audio)]
    out = encode(
        tmp_path / "with_audio.mp4", frames, fps=Fraction(24), audio_from=tiny_clip_with_audio
    )

    def audio_payloads(path: Path) -> list[bytes]:
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]

    assert read_video_info(out).audio_codec == "aac"
    assert audio_payloads(out) == audio_payloads(tiny_clip_with_audio)


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path: Path) -> None:
    frames = moving_square_frames(12, width=64, height=48)
    src = make_pcm_clip(tmp_path / "pcm.mkv", frames)
    out = encode(tmp_path / "out.mp4", frames, fps=Fraction(24), audio_from=src)
    assert read_video_info(out).audio_codec == "aac"
    with av.open(str(out)) as c:
        decoded = sum(f.samples for f in c.decode(c.streams.audio[0]))
    assert abs(decoded - 8000) < 2048  # the whole half second, give or take AAC framing


def test_reencoded_audio_keeps_its_offset_from_the_picture(tmp_path: Path) -> None:
    frames = moving_square_frames(24, width=64, height=48)
    src = make_pcm_clip(tmp_path / "late.mkv", frames, audio_delay_samples=4000)  # 0.25 s late
    assert sound_onset(src) == pytest.approx(0.25, abs=0.001)
    out = encode(tmp_path / "out.mp4", frames, fps=Fraction(24), audio_from=src)
    assert read_video_info(out).audio_codec == "aac"
    assert sound_onset(out) == pytest.approx(0.25, abs=0.002)  # heard when the source had it


def test_watermark_is_visible_in_the_corner_and_scales(tmp_path: Path) -> None:
    small = np.full((144, 256, 3), 40, np.uint8)
    marked = apply_watermark(small)
    x0, y0, x1, y1 = watermark_box(256, 144)
    changed = np.any(marked != small, axis=2)
    assert changed[y0:y1, x0:x1].mean() > 0.2
    outside = changed.copy()
    outside[max(0, y0 - 4) : y1 + 4, max(0, x0 - 4) : x1 + 4] = False
    assert not outside.any()
    assert x1 > 200  # right
    assert y1 > 120  # bottom
    big_box = watermark_box(3840, 2160)
    assert (big_box[2] - big_box[0]) / 3840 == pytest.approx((x1 - x0) / 256, rel=0.35)
    # Written through the encoder when asked for.
    path = encode(tmp_path / "wm.mp4", [small] * 2, options=EncodeOptions(watermark=True))
    decoded = next(iter_frames(path)).rgb
    assert decoded[y0:y1, x0:x1].max() > 150


def test_bad_options_and_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="crf"):
        EncodeOptions(crf=60)
    with pytest.raises(InvalidInput, match="codec"):
        EncodeOptions(codec="vp9")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="extension"):
        VideoWriter(tmp_path / "x.avi", width=64, height=48, fps=Fraction(24))
    with (
        pytest.raises(RenderError, match="expects"),
        VideoWriter(tmp_path / "x.mp4", width=64, height=48, fps=Fraction(24)) as w,
    ):
        w.write(np.zeros((48, 63, 3), np.uint8))
