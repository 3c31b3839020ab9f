"""Sequential decoding with PyAV: RGB frames plus their real presentation timestamps.

Frames are yielded one at a time in presentation order, so memory does not grow with the clip.
Every frame carries its index (position in presentation order, 0 = first frame) and its exact
time (`pts * time_base`, a `Fraction`), which is what `reframe.engine.timeline` plans with.

Colour: YUV -> RGB uses the stream's own matrix and range. When a file leaves the matrix
unspecified, HD (height >= 720) is read as BT.709 and smaller pictures as BT.601, the
convention players follow; `reframe.video.encode` applies the same rule on the way back, so a
frame that passes through unchanged keeps its colours.

Depth: frames decode to uint8 RGB (`depth=8`, every 8-bit source) or uint16 RGB (`depth=16`,
for 10- and 12-bit sources), so a 10-bit gradient is not cut to 256 levels before the network
sees it. `ColorInfo` records the source's bit depth and its HDR side data (mastering display
colour volume, content light level) so the encoder can write them back.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from reframe.errors import InvalidInput, InvalidMedia
from reframe.video.media import open_media
from reframe.video.timing import header_length

# FFmpeg enum values (AVColorSpace, AVColorRange, ...) as stored in files.
MATRIX_RGB = 0
MATRIX_BT709 = 1
MATRIX_UNSPECIFIED = 2
MATRIX_BT601 = 5  # AVCOL_SPC_BT470BG; 6 (SMPTE170M) is the same matrix
RANGE_UNSPECIFIED = 0
RANGE_LIMITED = 1
RANGE_FULL = 2
TRANSFER_PQ = 16  # AVCOL_TRC_SMPTE2084
TRANSFER_HLG = 18  # AVCOL_TRC_ARIB_STD_B67
PRIMARIES_BT2020 = 9
MATRIX_BT2020_NCL = 9

# Units of HEVC's mastering display SEI (and of x265's master-display option): chromaticity in
# 1/50000, luminance in 1/10000 cd/m2.
CHROMA_UNIT = 50000
LUMINANCE_UNIT = 10000


@dataclass(frozen=True, slots=True)
class MasteringDisplay:
    """The mastering display colour volume (SMPTE ST 2086) in SEI units (see CHROMA_UNIT).

    Primaries are (x, y) pairs in red, green, blue order; luminance is min and max.
    """

    red: tuple[int, int]
    green: tuple[int, int]
    blue: tuple[int, int]
    white_point: tuple[int, int]
    min_luminance: int
    max_luminance: int


@dataclass(frozen=True, slots=True)
class ContentLight:
    """Content light level (CTA-861.3): MaxCLL and MaxFALL, in cd/m2."""

    max_cll: int
    max_fall: int


@dataclass(frozen=True, slots=True)
class ColorInfo:
    """Colour metadata as FFmpeg enum values; 2 (or 0 for range) means "unspecified".

    `bit_depth` is the source's bits per component (8 for every 8-bit format); the HDR side data
    is None when the source does not carry it.
    """

    range: int = RANGE_UNSPECIFIED
    primaries: int = 2
    transfer: int = 2
    matrix: int = MATRIX_UNSPECIFIED
    bit_depth: int = 8
    mastering_display: MasteringDisplay | None = None
    content_light: ContentLight | None = None

    def conversion_matrix(self, height: int) -> int:
        """The YUV<->RGB matrix to convert with (never "unspecified")."""
        if self.matrix in (MATRIX_UNSPECIFIED, MATRIX_RGB, 3):
            return MATRIX_BT709 if height >= 720 else MATRIX_BT601
        return self.matrix

    def conversion_range(self) -> int:
        return RANGE_FULL if self.range == RANGE_FULL else RANGE_LIMITED


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a render needs to know about the source video stream (and whether it has audio)."""

    path: Path
    width: int
    height: int
    codec: str
    pix_fmt: str
    time_base: Fraction
    average_rate: Fraction | None
    start_time: Fraction  # seconds, presentation time of the first frame as the stream says
    duration: Fraction | None  # seconds from the first frame, as the header says (a hint)
    frame_count: int  # 0 when the container does not say
    rotation: int  # degrees, counter-clockwise, as stored in the display matrix
    color: ColorInfo
    audio_codec: str | None
    demuxer: str  # the container format FFmpeg read it as; later opens insist on the same


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int
    pts: int
    time: Fraction  # seconds, pts * time_base
    rgb: np.ndarray  # (H, W, 3) uint8, or uint16 when decoded with depth=16


def _open(path: Path, demuxer: str | None) -> Any:
    container = open_media(path, demuxer=demuxer)
    if not container.streams.video:
        container.close()
        raise InvalidMedia(f"{path.name}: contains no video stream")
    return container


def _color_of(frame: Any) -> ColorInfo:
    mastering, light = _hdr_side_data(frame)
    return ColorInfo(
        range=int(frame.color_range),
        primaries=int(frame.color_primaries),
        transfer=int(frame.color_trc),
        matrix=int(frame.colorspace),
        bit_depth=_bit_depth(frame),
        mastering_display=mastering,
        content_light=light,
    )


def _bit_depth(frame: Any) -> int:
    components = frame.format.components
    return max((int(c.bits) for c in components), default=8)


def _hdr_side_data(frame: Any) -> tuple[MasteringDisplay | None, ContentLight | None]:
    """The frame's mastering display and content light side data, if it has them.

    PyAV hands side data over as the raw FFmpeg structs: AVMasteringDisplayMetadata is 10
    rationals (3 primaries and the white point as x/y, then min and max luminance) followed by
    two int flags saying which halves are valid; AVContentLightMetadata is two unsigned ints.
    """
    mastering: MasteringDisplay | None = None
    light: ContentLight | None = None
    for item in frame.side_data:
        name = str(item.type).rsplit(".", 1)[-1]
        raw = bytes(item)
        if name == "MASTERING_DISPLAY_METADATA" and len(raw) >= 88:
            mastering = _mastering_display(raw) or mastering
        elif name == "CONTENT_LIGHT_LEVEL" and len(raw) >= 8:
            max_cll, max_fall = struct.unpack_from("=2I", raw)
            light = ContentLight(max_cll=int(max_cll), max_fall=int(max_fall))
    return mastering, light


def _mastering_display(raw: bytes) -> MasteringDisplay | None:
    values = struct.unpack_from("=22i", raw)
    has_primaries, has_luminance = values[20], values[21]
    if not (has_primaries and has_luminance):
        return None  # x265 takes the colour volume whole; half of one is not kept

    def at(k: int, unit: int) -> int:
        return _in_units((values[2 * k], values[2 * k + 1]), unit)

    def xy(k: int) -> tuple[int, int]:
        return at(2 * k, CHROMA_UNIT), at(2 * k + 1, CHROMA_UNIT)

    return MasteringDisplay(
        red=xy(0),
        green=xy(1),
        blue=xy(2),
        white_point=xy(3),
        min_luminance=at(8, LUMINANCE_UNIT),
        max_luminance=at(9, LUMINANCE_UNIT),
    )


def _in_units(ratio: tuple[int, int], unit: int) -> int:
    num, den = ratio
    return round(Fraction(num, den) * unit) if den else 0


def read_video_info(path: Path, *, demuxer: str | None = None) -> VideoInfo:
    """Stream metadata plus colour and rotation, read from the first decoded frame.

    Colour tags and the display matrix are only reliable on frames (containers disagree on where
    they live), so the first frame is decoded; that costs one frame, not a pass over the file.
    `demuxer`: the container format the probe found (see `reframe.video.media.open_media`).
    """
    import av

    container = _open(path, demuxer)
    try:
        stream = container.streams.video[0]
        tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise InvalidMedia(f"{path.name}: the video stream cannot be decoded ({exc})") from exc
        if first is None:
            raise InvalidMedia(f"{path.name}: the video stream has no frames")
        start = Fraction(first.pts) * tb if first.pts is not None else Fraction(0)
        duration = header_length(
            Fraction(stream.duration) * tb if stream.duration else None,
            Fraction(container.duration, 1_000_000) if container.duration else None,
            start,
        )
        audio = container.streams.audio
        return VideoInfo(
            path=path,
            width=int(first.width),
            height=int(first.height),
            codec=str(stream.codec_context.name),
            pix_fmt=str(first.format.name),
            time_base=tb,
            average_rate=Fraction(stream.average_rate) if stream.average_rate else None,
            start_time=start,
            duration=duration,
            frame_count=int(stream.frames or 0),
            rotation=round(first.rotation or 0),
            color=_color_of(first),
            audio_codec=str(audio[0].codec_context.name) if audio else None,
            demuxer=str(container.format.name),
        )
    finally:
        container.close()


def to_rgb(frame: Any, color: ColorInfo | None = None, depth: int = 8) -> np.ndarray:
    """(H, W, 3) RGB from a decoded frame, honouring its matrix and range.

    `depth` 8 gives uint8; 16 gives uint16 (full 0..65535 scale), which keeps every level of a
    10- or 12-bit source.
    """
    color = color or _color_of(frame)
    if depth == 16:
        return _to_rgb48(frame, color)
    if depth != 8:
        raise InvalidInput(f"depth must be 8 or 16, got {depth}")
    if frame.format.name in ("rgb24", "gbrp", "bgr24", "bgr0", "rgb0"):
        return np.asarray(frame.to_ndarray(format="rgb24"))
    rgb = frame.reformat(
        format="rgb24",
        src_colorspace=color.conversion_matrix(frame.height),
        src_color_range=color.conversion_range(),
        dst_color_range=RANGE_FULL,
    )
    return np.asarray(rgb.to_ndarray())


def _to_rgb48(frame: Any, color: ColorInfo) -> np.ndarray:
    if frame.format.name.startswith(("gbr", "rgb", "bgr")):
        rgb = frame.reformat(format="rgb48le")
    else:
        rgb = frame.reformat(
            format="rgb48le",
            src_colorspace=color.conversion_matrix(frame.height),
            src_color_range=color.conversion_range(),
            dst_color_range=RANGE_FULL,
        )
    return np.asarray(rgb.to_ndarray(), dtype=np.uint16)


def iter_frames(
    path: Path,
    *,
    start: int = 0,
    stop: int | None = None,
    frame_pts: Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
    gray: bool = False,
    threads: int | None = None,
    demuxer: str | None = None,
    depth: int = 8,
) -> Iterator[DecodedFrame]:
    """Decode frames ``[start, stop)`` in presentation order.

    `frame_pts`: the pts of every frame (from a previous pass, e.g. `scan_pts`); with it a chunk
    starting mid-clip seeks to the keyframe before `start` instead of decoding from the top.
    `size` = (width, height) scales while converting (used by scene analysis); `gray` yields
    (H, W, 1) luma instead of RGB. Frames whose timestamps do not increase (broken muxes) are
    dropped so the output timeline stays strictly ordered. `demuxer`: as in `read_video_info`.
    `depth`: 8 (uint8 RGB) or 16 (uint16 RGB, see `to_rgb`); `gray` is always uint8.
    """
    import av

    container = _open(path, demuxer)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads or min(4, os.cpu_count() or 1)
        tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        index_of: dict[int, int] | None = None
        index = 0
        frames: Iterator[Any] = container.decode(stream)
        if start > 0 and frame_pts is not None:
            if start >= len(frame_pts):
                return
            index_of = {p: i for i, p in enumerate(frame_pts)}
            frames = _decode_from(container, stream, frame_pts, index_of, start)
        nominal = round(1 / (Fraction(stream.average_rate) * tb)) if stream.average_rate else 1
        last_pts: int | None = None
        color: ColorInfo | None = None
        try:
            for frame in frames:
                pts = frame.pts
                if pts is None:
                    pts = 0 if last_pts is None else last_pts + nominal
                if last_pts is not None and pts <= last_pts:
                    continue
                last_pts = pts
                if index_of is not None:
                    found = index_of.get(pts)
                    if found is None:
                        continue  # before the seek target's keyframe boundary
                    index = found
                if index >= start and (stop is None or index < stop):
                    if color is None:
                        color = _color_of(frame)
                    rgb = _convert(frame, color, size, gray, depth)
                    yield DecodedFrame(index, pts, pts * tb, rgb)
                index += 1
                if stop is not None and index >= stop:
                    return
        except av.error.FFmpegError as exc:
            raise InvalidMedia(f"{path.name}: decoding failed at frame {index} ({exc})") from exc
    finally:
        container.close()


def _decode_from(
    container: Any, stream: Any, frame_pts: Sequence[int], index_of: dict[int, int], start: int
) -> Iterator[Any]:
    """Decoded frames after a seek that reaches frame `start`.

    A seek lands on the keyframe decoded before `start`'s presentation time. With open GOPs
    (HEVC's CRA keyframes, x265's default) the frames shown before such a keyframe but decoded
    after it ("leading pictures") need the previous GOP and the decoder drops them, so a chunk
    starting on one would lose its first frames: the target steps back (1, 2, 4... frames)
    until the first frame decoded is at or before `start`.
    """
    target, step = start, 1
    while True:
        container.seek(int(frame_pts[target]), backward=True, any_frame=False, stream=stream)
        frames = container.decode(stream)
        peeked = []
        for frame in frames:
            peeked.append(frame)
            if frame.pts is not None and frame.pts in index_of:
                break
        first = index_of.get(peeked[-1].pts) if peeked else None
        if first is None or first <= start or target == 0:
            yield from peeked
            yield from frames
            return
        target, step = max(0, target - step), 2 * step


def _convert(
    frame: Any, color: ColorInfo, size: tuple[int, int] | None, gray: bool, depth: int = 8
) -> np.ndarray:
    if size is None and not gray:
        return to_rgb(frame, color, depth)
    width, height = size if size is not None else (frame.width, frame.height)
    if gray:
        small = frame.reformat(width=width, height=height, format="gray", interpolation="AREA")
        return np.asarray(small.to_ndarray())[:, :, None]
    return to_rgb(frame.reformat(width=width, height=height, interpolation="AREA"), color, depth)
