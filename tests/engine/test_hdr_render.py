"""10-bit and HDR sources render as 10-bit HDR: depth, tags and side data survive, and the
synthesized frames keep more than 8 bits of levels (issue 13 part 5)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from reframe.engine.render_core import plan_render, render_chunk, render_depth, render_file
from reframe.video.decode import ColorInfo, ContentLight, MasteringDisplay, read_video_info
from reframe.video.encode import EncodeOptions
from tests.fixtures.hdr import (
    MASTER_DISPLAY,
    MATRIX_BT2020_NCL,
    MAX_CLL,
    MAX_FALL,
    PRIMARIES_BT2020,
    RANGE_LIMITED,
    TRANSFER,
    first_frame,
    level_counts,
    make_hdr_clip,
    planes,
    side_data_types,
)
from tests.fixtures.media import make_clip
from tests.fixtures.render import BlendInterpolator

EXPECTED_MASTERING = MasteringDisplay(
    red=MASTER_DISPLAY["red"],  # type: ignore[arg-type]
    green=MASTER_DISPLAY["green"],  # type: ignore[arg-type]
    blue=MASTER_DISPLAY["blue"],  # type: ignore[arg-type]
    white_point=MASTER_DISPLAY["white_point"],  # type: ignore[arg-type]
    min_luminance=MASTER_DISPLAY["min_luminance"],  # type: ignore[arg-type]
    max_luminance=MASTER_DISPLAY["max_luminance"],  # type: ignore[arg-type]
)


def hdr_color(transfer: str) -> ColorInfo:
    return ColorInfo(
        range=RANGE_LIMITED,
        primaries=PRIMARIES_BT2020,
        transfer=TRANSFER[transfer],
        matrix=MATRIX_BT2020_NCL,
        bit_depth=10,
        mastering_display=EXPECTED_MASTERING,
        content_light=ContentLight(MAX_CLL, MAX_FALL),
    )


def test_source_colour_info_has_depth_and_hdr_side_data(tmp_path: Path) -> None:
    clip = make_hdr_clip(tmp_path / "pq.mp4", transfer="pq")
    assert read_video_info(clip).color == hdr_color("pq")
    bare = make_hdr_clip(tmp_path / "bare.mp4", transfer="hlg", side_data=False)
    color = read_video_info(bare).color
    assert (color.bit_depth, color.mastering_display, color.content_light) == (10, None, None)
    sdr = read_video_info(make_clip(tmp_path / "sdr.mp4")).color
    assert (sdr.bit_depth, sdr.mastering_display, sdr.content_light) == (8, None, None)


def test_synthesized_frames_keep_more_than_256_levels_in_the_engine(tmp_path: Path) -> None:
    clip = make_hdr_clip(tmp_path / "pq.mp4", transfer="pq")
    plan = plan_render(clip, 48)
    depth = render_depth(plan.info.color)
    assert depth == 16
    frames = list(
        render_chunk(clip, plan.timeline, 0, len(plan.timeline), BlendInterpolator(), depth=depth)
    )
    synthesized = [f for f in frames if f.synthesized]
    assert synthesized
    for frame in frames:
        assert frame.rgb.dtype == np.uint16, f"frame {frame.index} is {frame.rgb.dtype}"
    for frame in synthesized:
        counts = [len(np.unique(frame.rgb[..., c])) for c in range(3)]
        assert min(counts) > 256, f"synthesized frame {frame.index} has {counts} levels"


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_hdr_source_renders_to_10_bit_hevc_with_tags_and_side_data(
    tmp_path: Path, transfer: str, codec: str
) -> None:
    clip = make_hdr_clip(tmp_path / "src.mp4", transfer=transfer)
    out = tmp_path / "out.mp4"
    # An h264 request for a 10-bit source still gets 10-bit HEVC (README, "10-bit and HDR").
    report = render_file(
        clip,
        out,
        48,
        BlendInterpolator(),
        encode=EncodeOptions(codec=codec, preset="ultrafast"),  # type: ignore[arg-type]
    )
    assert report.frames == 24
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc"
        assert stream.codec_context.pix_fmt == "yuv420p10le"
    first = first_frame(out)
    assert first.format.name == "yuv420p10le"
    assert {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} <= side_data_types(first)
    assert read_video_info(out).color == hdr_color(transfer)
    stored = planes(out)
    assert len(stored) == 24
    # Frame 2k is source frame k; 2k + 1 is synthesized halfway between k and k + 1.
    for k in range(1, 23, 2):
        counts = level_counts(stored[k])
        assert min(counts) > 256, f"synthesized frame {k} has {counts} levels per plane"


def test_lossless_hdr_render_is_10_bit_rgb(tmp_path: Path) -> None:
    clip = make_hdr_clip(tmp_path / "src.mp4", transfer="hlg")
    out = tmp_path / "out.mkv"
    render_file(clip, out, 48, BlendInterpolator(), encode=EncodeOptions(crf=0, preset="ultrafast"))
    first = first_frame(out)
    assert first.format.name == "gbrp10le"
    assert {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} <= side_data_types(first)
    color = read_video_info(out).color
    assert (color.primaries, color.transfer, color.bit_depth) == (
        PRIMARIES_BT2020,
        TRANSFER["hlg"],
        10,
    )
    assert min(level_counts(planes(out)[1])) > 256


def test_an_8_bit_source_still_renders_8_bit_h264(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "sdr.mp4", frames=12)
    plan = plan_render(clip, 48)
    depth = render_depth(plan.info.color)
    assert depth == 8
    frames = list(
        render_chunk(clip, plan.timeline, 0, len(plan.timeline), BlendInterpolator(), depth=depth)
    )
    assert {f.rgb.dtype for f in frames} == {np.dtype(np.uint8)}
    out = tmp_path / "out.mp4"
    render_file(clip, out, 48, BlendInterpolator())
    with av.open(str(out)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("h264", "yuv420p")
    assert not side_data_types(first_frame(out)) & {
        "MASTERING_DISPLAY_METADATA",
        "CONTENT_LIGHT_LEVEL",
    }


def test_hdr_source_asked_for_prores_keeps_10_bits_in_prores(tmp_path: Path) -> None:
    # ProRes is 10-bit itself: the deep frames go to it rather than being forced to HEVC.
    clip = make_hdr_clip(tmp_path / "src.mp4", transfer="pq")
    out = tmp_path / "out.mov"
    render_file(clip, out, 48, BlendInterpolator(), encode=EncodeOptions(codec="prores"))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores"
        assert stream.codec_context.pix_fmt == "yuv422p10le"
    color = read_video_info(out).color
    assert (color.primaries, color.transfer, color.matrix, color.bit_depth) == (
        PRIMARIES_BT2020,
        TRANSFER["pq"],
        MATRIX_BT2020_NCL,
        10,
    )
    stored = planes(out)
    assert len(stored) == 24
    for k in range(1, 23, 2):
        counts = level_counts(stored[k])
        assert min(counts) > 256, f"synthesized frame {k} has {counts} levels per plane"
