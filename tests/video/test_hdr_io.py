"""Decoding and encoding at more than 8 bits: uint16 RGB in and out, 10-bit HEVC with the
source's tags and HDR SEI, 12-bit sources written as 10-bit (issue 13 part 5)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from reframe.errors import RenderError
from reframe.video.decode import ColorInfo, ContentLight, iter_frames, read_video_info
from reframe.video.encode import (
    EncodeOptions,
    VideoWriter,
    apply_watermark,
    hdr_x265_params,
    output_bit_depth,
    output_codec,
)
from tests.fixtures.hdr import (
    X265_HDR,
    first_frame,
    gradient_frames,
    level_counts,
    make_hdr_clip,
    planes,
    side_data_types,
)
from tests.fixtures.media import make_clip


def test_iter_frames_depth_16_keeps_the_10_bit_levels(tmp_path: Path) -> None:
    clip = make_hdr_clip(tmp_path / "pq.mp4", frames=4)
    deep = [f.rgb for f in iter_frames(clip, depth=16)]
    shallow = [f.rgb for f in iter_frames(clip)]
    assert [a.dtype for a in deep] == [np.dtype(np.uint16)] * 4
    assert [a.dtype for a in shallow] == [np.dtype(np.uint8)] * 4
    assert min(len(np.unique(deep[0][..., c])) for c in range(3)) > 256
    # Both are the gradients that went in (through 10-bit 4:2:0); the 16-bit decode is the
    # closer one and has no bias (measured: 1.8 vs 2.1 8-bit levels off on average, bias
    # -0.07 vs -1.3).
    sent = gradient_frames(4)[0].astype(np.float64)
    off_deep = deep[0].astype(np.float64) - sent
    off_shallow = shallow[0].astype(np.float64) * 257 - sent
    assert np.abs(off_deep).mean() < np.abs(off_shallow).mean()
    assert abs(off_deep.mean()) < 0.5 * 257


def test_seeking_into_a_10_bit_clip_decodes_at_depth_16(tmp_path: Path) -> None:
    clip = make_hdr_clip(tmp_path / "gop.mp4", frames=16, keyint=4)
    all_frames = list(iter_frames(clip, depth=16))
    pts = [f.pts for f in all_frames]
    chunk = list(iter_frames(clip, start=9, stop=13, frame_pts=pts, depth=16))
    assert [f.index for f in chunk] == [9, 10, 11, 12]
    for got in chunk:
        assert np.array_equal(got.rgb, all_frames[got.index].rgb)


def test_a_12_bit_source_is_written_as_10_bit(tmp_path: Path) -> None:
    clip = make_hdr_clip(tmp_path / "12.mp4", frames=3, pix_fmt="yuv420p12le")
    color = read_video_info(clip).color
    assert color.bit_depth == 12
    assert output_bit_depth(color) == 10
    out = tmp_path / "out.mp4"
    frames = [f.rgb for f in iter_frames(clip, depth=16)]
    with VideoWriter(out, width=96, height=64, fps=Fraction(48), color=color) as writer:
        for rgb in frames:
            writer.write(rgb)
    first = first_frame(out)
    assert first.format.name == "yuv420p10le"
    assert {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} <= side_data_types(first)
    assert min(level_counts(planes(out)[0])) > 256


def test_x265_params_reproduce_the_probed_side_data(tmp_path: Path) -> None:
    color = read_video_info(make_hdr_clip(tmp_path / "pq.mp4", frames=4)).color
    assert ":".join(hdr_x265_params(color)) == X265_HDR
    assert hdr_x265_params(ColorInfo(bit_depth=10, content_light=ContentLight(600, 0))) == [
        "max-cll=600,0"
    ]
    assert hdr_x265_params(ColorInfo(bit_depth=10)) == []


def test_deep_output_is_hevc_10_bit_whatever_codec_was_asked() -> None:
    deep = ColorInfo(bit_depth=10)
    assert output_codec(EncodeOptions(codec="h264"), deep) == ("libx265", "yuv420p10le")
    assert output_codec(EncodeOptions(codec="hevc"), deep) == ("libx265", "yuv420p10le")
    assert output_codec(EncodeOptions(crf=0), deep) == ("libx265", "gbrp10le")
    assert output_bit_depth(ColorInfo()) == 8
    with pytest.raises(RenderError):
        output_codec(EncodeOptions(), ColorInfo())


def test_a_deep_writer_takes_uint16_frames_only(tmp_path: Path) -> None:
    color = ColorInfo(bit_depth=10, primaries=9, transfer=16, matrix=9, range=1)
    with (
        pytest.raises(RenderError, match=r"expects \(64, 96, 3\) uint16"),
        VideoWriter(tmp_path / "o.mp4", width=96, height=64, fps=Fraction(24), color=color) as w,
    ):
        w.write(np.zeros((64, 96, 3), np.uint8))
    with (
        pytest.raises(RenderError, match=r"expects \(64, 96, 3\) uint8"),
        VideoWriter(tmp_path / "p.mp4", width=96, height=64, fps=Fraction(24)) as w,
    ):
        w.write(np.zeros((64, 96, 3), np.uint16))


def test_an_odd_sized_deep_frame_is_padded_and_tagged(tmp_path: Path) -> None:
    color = ColorInfo(bit_depth=10, primaries=9, transfer=18, matrix=9, range=1)
    frames = [f[:63, :95] for f in gradient_frames(3)]
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, width=95, height=63, fps=Fraction(24), color=color) as writer:
        for rgb in frames:
            writer.write(np.ascontiguousarray(rgb))
    info = read_video_info(out)
    assert (info.width, info.height, info.pix_fmt) == (96, 64, "yuv420p10le")
    assert (info.color.transfer, info.color.primaries, info.color.matrix) == (18, 9, 9)
    # No HDR side data was given, so none is invented.
    assert info.color.mastering_display is None
    assert info.color.content_light is None


def test_watermark_on_uint16_matches_the_uint8_mark() -> None:
    base8 = np.full((96, 128, 3), 100, np.uint8)
    base16 = np.full((96, 128, 3), 100 * 257, np.uint16)
    marked8, marked16 = apply_watermark(base8), apply_watermark(base16)
    assert marked16.dtype == np.uint16
    assert np.abs(marked16.astype(np.int64) / 257 - marked8).max() <= 1.0
    assert (marked16 != base16).any()


def test_an_8_bit_clip_decodes_and_encodes_as_before(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "sdr.mp4", frames=3)
    color = read_video_info(clip).color
    assert color == ColorInfo(range=color.range, primaries=2, transfer=2, matrix=2)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, width=128, height=96, fps=Fraction(48), color=color) as writer:
        for f in iter_frames(clip):
            writer.write(f.rgb)
    with av.open(str(out)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("h264", "yuv420p")
