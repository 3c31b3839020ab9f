"""Generated source clips for the benchmarks: deterministic, any size, any codec PyAV encodes.

The picture is a panning textured background with a moving block and a little grain: enough
motion and detail that encoders use B-frames and reach the bit rates of real footage, and cheap
to make at 4K (crops of one precomputed texture, a few recycled grain fields).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


def synthetic_frames(width: int, height: int, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """`count` (height, width, 3) uint8 RGB frames."""
    rng = np.random.default_rng(seed)
    pad = 2 * count + 64
    yy, xx = np.mgrid[0 : height + pad, 0 : width + pad].astype(np.float32)
    texture = np.stack(
        [
            128 + 70 * np.sin(xx / 17.0) * np.cos(yy / 23.0),
            128 + 60 * np.sin((xx + 2 * yy) / 31.0),
            128 + 50 * np.cos((xx - yy) / 13.0),
        ],
        axis=-1,
    )
    texture += rng.normal(0, 12, texture.shape).astype(np.float32)
    texture = np.clip(texture, 0, 255).astype(np.uint8)
    grain = [rng.integers(-3, 4, (height, width, 3), dtype=np.int16) for _ in range(5)]
    block = rng.integers(0, 256, (max(1, height // 4), max(1, width // 4), 3), dtype=np.uint8)
    for i in range(count):
        frame = texture[i : i + height, 2 * i : 2 * i + width].astype(np.int16) + grain[i % 5]
        x = (8 + 5 * i) % max(1, width - block.shape[1])
        y = (height - block.shape[0]) // 2
        frame[y : y + block.shape[0], x : x + block.shape[1]] = block
        yield np.ascontiguousarray(np.clip(frame, 0, 255).astype(np.uint8))


def write_clip(
    path: Path,
    width: int,
    height: int,
    frames: int,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    matrix: int | None = None,
    color_range: int | None = None,
    fps: int = 24,
) -> Path:
    """Encode `frames` synthetic frames to `path`. `matrix` / `color_range` are FFmpeg's
    AVColorSpace / AVColorRange values to tag the stream with (None leaves them unspecified)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = dict(options or {})
        ctx = stream.codec_context
        if matrix is not None:
            ctx.colorspace = matrix
        if color_range is not None:
            ctx.color_range = color_range
        for i, rgb in enumerate(synthetic_frames(width, height, frames)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
