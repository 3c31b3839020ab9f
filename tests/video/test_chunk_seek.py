"""A render actor's chunk (seek to the keyframe before it, decode forward) must give exactly the
frames sequential decoding gives, from any start: the stitched render equals the single-process
one only if it does. Checked on the streams where random access goes wrong in other decoders
(bench/decode.py found decord returning other frames for HEVC open-GOP chunks): H.264 with
B-frames and short GOPs, HEVC with open GOPs (leading pictures after a CRA keyframe), and
odd-sized VP9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reframe.video.decode import iter_frames
from tests.fixtures.media import moving_square_frames, write_video

GOP = "keyint=12:min-keyint=12:scenecut=0:bframes=2:b-adapt=0"
CASES = {
    "h264-bframes": ("libx264", ".mp4", 128, 96, {"x264-params": f"{GOP}:b-pyramid=normal"}),
    "hevc-open-gop": ("libx265", ".mp4", 128, 96, {"x265-params": f"{GOP}:log-level=error"}),
    "vp9-odd-size": ("libvpx-vp9", ".webm", 129, 97, {"g": "12", "deadline": "realtime"}),
}


def stream_facts(path: Path) -> tuple[int, int]:
    """(B-frames, leading pictures): frames that come after a keyframe in decode order but are
    shown before it, which a decoder starting at that keyframe cannot always rebuild."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        b_frames = sum(
            f.pict_type == av.video.frame.PictureType.B for f in container.decode(stream)
        )
    with av.open(str(path)) as container:
        leading, key_pts = 0, None
        for packet in container.demux(container.streams.video[0]):
            if packet.pts is None:
                continue
            if packet.is_keyframe:
                key_pts = packet.pts
            elif key_pts is not None and packet.pts < key_pts:
                leading += 1
    return b_frames, leading


@pytest.mark.parametrize("case", list(CASES))
def test_a_chunk_from_any_start_equals_sequential_decoding(case: str, tmp_path: Path) -> None:
    codec, suffix, width, height, options = CASES[case]
    path = write_video(
        tmp_path / f"clip{suffix}",
        moving_square_frames(40, width=width, height=height, speed_px=3.0),
        codec=codec,
        options=options,
    )
    b_frames, leading = stream_facts(path)
    if case != "vp9-odd-size":
        assert b_frames >= 10, "the clip must have B-frames to test"
    if case == "hevc-open-gop":
        assert leading > 0, "the clip must have open GOPs to test"
    everything = list(iter_frames(path, threads=1))
    assert [f.index for f in everything] == list(range(40))
    pts = [f.pts for f in everything]
    for start in range(1, 37):
        chunk = list(iter_frames(path, start=start, stop=start + 4, frame_pts=pts, threads=1))
        assert [c.index for c in chunk] == list(range(start, start + 4)), start
        for c in chunk:
            assert c.pts == everything[c.index].pts
            np.testing.assert_array_equal(c.rgb, everything[c.index].rgb, err_msg=f"{start}")
