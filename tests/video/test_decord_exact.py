"""decord's random access must give exactly the frames sequential PyAV decoding gives.

The render actors fetch their chunk (and its halo) with decord's `get_batch`; the single-process
path decodes with PyAV from the start. If these ever differ by one level on one pixel, the
stitched-equals-single-process property breaks, so this is checked on clips with B-frames and
short GOPs, in order, at random and backwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.media import make_clip

# B-frames on (the fixture's ultrafast preset turns them off), fixed 16-frame GOPs.
B_FRAMES = {"x264-params": "bframes=3:b-pyramid=normal:keyint=16:min-keyint=16:scenecut=0"}


def pyav_frames(path: Path) -> tuple[list[np.ndarray], int]:
    """Every frame as RGB, in presentation order, and how many were B-frames."""
    import av

    frames: list[np.ndarray] = []
    b_frames = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            b_frames += frame.pict_type == av.video.frame.PictureType.B
    return frames, b_frames


@pytest.fixture(params=[(128, 96, False), (176, 144, True)], ids=["128x96", "176x144-with-audio"])
def b_frame_clip(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    width, height, audio = request.param
    return make_clip(
        tmp_path / "bframes.mp4",
        frames=64,
        width=width,
        height=height,
        audio=audio,
        options=B_FRAMES,
    )


def test_get_batch_is_frame_exact_in_any_order(b_frame_clip: Path) -> None:
    import decord

    reference, b_frames = pyav_frames(b_frame_clip)
    assert len(reference) == 64
    assert b_frames >= 16

    reader = decord.VideoReader(str(b_frame_clip), ctx=decord.cpu(0))
    assert len(reader) == len(reference)
    assert list(reader.get_key_indices()) == [0, 16, 32, 48]

    rng = np.random.default_rng(7)
    orders = {
        "sequential": list(range(64)),
        "random": [int(i) for i in rng.integers(0, 64, size=40)],
        "backward": list(range(63, -1, -1)),
        "chunk with halo across a GOP": list(range(29, 49)),
        "jumps back to the start": [50, 3, 63, 0, 17, 16],
    }
    for name, indices in orders.items():
        batch = reader.get_batch(indices).asnumpy()
        assert batch.dtype == np.uint8
        for got, index in zip(batch, indices, strict=True):
            diff = np.abs(got.astype(np.int16) - reference[index].astype(np.int16)).max()
            assert diff == 0, f"{name}: frame {index} differs by up to {diff}"
