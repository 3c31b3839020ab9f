"""Encoding with PyAV: RGB frames in, H.264/HEVC/ProRes out, source audio carried along.

`VideoWriter` takes frames one at a time (memory stays flat), stamps them with exact pts
(frame k at ``start_time + k / fps``), flushes the encoder on close, and interleaves the
source's audio packets as the video advances.

Choices worth knowing:

* Lossy output is 8-bit 4:2:0 (`yuv420p`), the format every browser and phone plays. The
  RGB -> YUV matrix and range are the source's (see `ColorInfo.conversion_matrix`), and the
  stream is tagged with the source's range, primaries, transfer and matrix.
* ``crf=0`` means lossless *in RGB*, because that is what the engine produced and what quality
  measurement compares: H.264 uses `libx264rgb` (4:4:4 RGB, qp 0), HEVC uses `libx265` with
  ``lossless=1`` on planar GBR. A YUV 4:2:0 "lossless" stream would still lose the chroma the
  RGB -> YUV conversion throws away. These files are for measurement; many players reject them.
* ProRes (`prores_ks`) is 10-bit 4:2:2 (profiles `standard`, `hq`) or 4:4:4 (`4444`); the
  CRF does not apply to it, the profile sets its quality (see reframe.video.formats).
* 4:2:0 needs even dimensions and this x264 build cannot signal a crop, so an odd width or
  height is padded by one replicated edge column/row (output at most 1 px larger). Lossless
  RGB output keeps the exact size.
* Sources deeper than 8 bits (10- or 12-bit, typically HDR: PQ or HLG over BT.2020) are
  written as 10-bit HEVC (`yuv420p10le`, or `gbrp10le` for lossless) whatever codec was asked,
  because H.264 at 10 bits plays almost nowhere; 12-bit goes to 10. The frames are then uint16
  RGB, and the mastering display and content light level of the source are written back as
  HEVC SEI (see `output_codec`, `hdr_x265_params`). 8-bit sources take the paths above, unchanged.
* Audio is copied packet for packet when the output container accepts the codec; otherwise it
  is re-encoded (AAC, or Opus for WebM). Rotation is kept as a display matrix, not by turning
  pixels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from reframe.errors import InvalidInput, RenderError
from reframe.video.decode import MATRIX_RGB, RANGE_FULL, ColorInfo, ContentLight, MasteringDisplay
from reframe.video.formats import OutputFormat, ProresProfile
from reframe.video.mux import AudioCarrier, container_format

Codec = Literal["h264", "hevc", "prores"]

# prores_ks's profile numbers and the pixel format each one takes.
_PRORES = {"standard": (2, "yuv422p10le"), "hq": (3, "yuv422p10le"), "4444": (4, "yuv444p10le")}


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """How to encode. `crf` 0 is lossless RGB (see the module notes); 18 looks transparent.
    ProRes ignores `crf` and `preset`: `prores_profile` sets its quality."""

    codec: Codec = "h264"
    crf: int = 18
    preset: str = "medium"
    watermark: bool = False
    threads: int = 0  # 0: the encoder decides
    prores_profile: ProresProfile = "hq"

    def __post_init__(self) -> None:
        if self.codec not in ("h264", "hevc", "prores"):
            raise InvalidInput(f"codec must be h264, hevc or prores, got {self.codec!r}")
        if not 0 <= self.crf <= 51:
            raise InvalidInput(f"crf must be between 0 (lossless) and 51, got {self.crf}")
        if self.prores_profile not in _PRORES:
            raise InvalidInput(
                f"prores_profile must be one of {', '.join(_PRORES)}, got {self.prores_profile!r}"
            )

    @property
    def lossless(self) -> bool:
        return self.crf == 0 and self.codec != "prores"

    def with_output(self, output: OutputFormat | None) -> EncodeOptions:
        """These settings with a chosen output's codec and quality (None: unchanged). The
        preset, threads and watermark stay: they are how to encode, not what."""
        if output is None:
            return self
        return dataclasses.replace(
            self,
            codec=output.codec,
            crf=output.crf if output.crf is not None else self.crf,
            prores_profile=output.prores_profile or self.prores_profile,
        )

    @property
    def pix_fmt(self) -> str:
        """The encoded pixel format."""
        if self.codec == "prores":
            return _PRORES[self.prores_profile][1]
        if self.lossless:
            return "rgb24" if self.codec == "h264" else "gbrp"
        return "yuv420p"


# --- bit depth and HDR ------------------------------------------------------------------

DEEP_PIX_FMT = "yuv420p10le"
DEEP_LOSSLESS_PIX_FMT = "gbrp10le"


def output_bit_depth(color: ColorInfo) -> int:
    """Bits per component of the output: 8 for 8-bit sources, 10 for anything deeper."""
    return 8 if color.bit_depth <= 8 else 10


def output_codec(options: EncodeOptions, color: ColorInfo) -> tuple[str, str]:
    """(encoder, pixel format) for a source deeper than 8 bits asked for h264 or hevc: always
    10-bit libx265 (ProRes, 10-bit itself, takes the deep frames as it is).

    A >8-bit source asked to become H.264 still gets HEVC: 10-bit H.264 (High 10) is not
    decoded by browsers or phone hardware, and 8 bits would band a PQ or HLG picture.
    """
    if output_bit_depth(color) <= 8:
        raise RenderError("output_codec is for sources deeper than 8 bits")
    return "libx265", DEEP_LOSSLESS_PIX_FMT if options.lossless else DEEP_PIX_FMT


def master_display_param(display: MasteringDisplay) -> str:
    """x265's ``master-display`` value (SMPTE ST 2086, green-blue-red as the SEI orders them)."""
    g, b, r, wp = display.green, display.blue, display.red, display.white_point
    return (
        f"G({g[0]},{g[1]})B({b[0]},{b[1]})R({r[0]},{r[1]})WP({wp[0]},{wp[1]})"
        f"L({display.max_luminance},{display.min_luminance})"
    )


def content_light_param(light: ContentLight) -> str:
    return f"{light.max_cll},{light.max_fall}"


def hdr_x265_params(color: ColorInfo) -> list[str]:
    """x265 parameters that write the source's HDR side data as SEI in the HEVC stream."""
    params = []
    if color.mastering_display is not None:
        params.append(f"master-display={master_display_param(color.mastering_display)}")
    if color.content_light is not None:
        params.append(f"max-cll={content_light_param(color.content_light)}")
    return params


# --- watermark ---------------------------------------------------------------------------

# A 5x7 pixel font for the one word we draw; no font files or imaging libraries needed.
_GLYPHS = {
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "F": ("11111", "10000", "10000", "11110", "10000", "10000", "10000"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "M": ("10001", "11011", "10101", "10101", "10001", "10001", "10001"),
}
WATERMARK_TEXT = "REFRAME"


def _text_mask(text: str) -> np.ndarray:
    rows = []
    for r in range(7):
        rows.append("0".join(_GLYPHS[ch][r] for ch in text))
    return np.array([[c == "1" for c in row] for row in rows], dtype=bool)


def watermark_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the watermark: bottom-right, text about 1/24 of the short side."""
    mask = _text_mask(WATERMARK_TEXT)
    cell = max(1, round(min(width, height) / 24 / mask.shape[0]))
    w, h = mask.shape[1] * cell, mask.shape[0] * cell
    margin = max(2, round(min(width, height) / 40))
    x1, y1 = width - margin, height - margin
    return max(0, x1 - w), max(0, y1 - h), x1, y1


def apply_watermark(rgb: np.ndarray) -> np.ndarray:
    """A copy of `rgb` (H, W, 3) uint8 or uint16 with a semi-opaque "REFRAME" in the bottom-right
    corner.

    White text over a darkened outline so that it reads on bright and dark footage alike; the
    size follows the picture so a 4K render is marked as visibly as a 480p one.
    """
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = watermark_box(width, height)
    mask = _text_mask(WATERMARK_TEXT)
    cell = max(1, (y1 - y0) // mask.shape[0])
    big = np.kron(mask, np.ones((cell, cell), dtype=bool))[: y1 - y0, : x1 - x0]
    if big.size == 0:
        return rgb.copy()
    outline = big.copy()
    pad = max(1, cell // 3)
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            outline |= np.roll(np.roll(big, dy, axis=0), dx, axis=1)
    out = rgb.copy()
    region = out[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]].astype(np.float32)
    region[outline] *= 0.45
    peak = float(np.iinfo(rgb.dtype).max)
    if rgb.dtype != np.uint8:
        region = region.astype(np.float64)  # float32 cannot hold every 16-bit level exactly
    region[big] = region[big] * 0.25 + peak * 0.75
    out[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]] = np.clip(region + 0.5, 0, peak).astype(
        rgb.dtype
    )
    return out


# --- writer ------------------------------------------------------------------------------


class VideoWriter:
    """Write RGB frames to a video file at a constant rate, optionally with the source audio.

    Use as a context manager; frames must all have the same (H, W, 3) shape, uint8 for an 8-bit
    `color` and uint16 for a deeper one (`output_bit_depth`).
    `start_time` (seconds) is when frame 0 is shown; pass the source's first-frame time so audio
    copied with its original timestamps stays in sync. `audio_demuxer`: the container format of
    `audio_from` as probed (see `reframe.video.media.open_media`). `audio_until` (seconds, on
    the source's clock): where the audio ends when the picture stops early (a render of the
    first seconds); None carries all of it.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: Fraction,
        options: EncodeOptions | None = None,
        color: ColorInfo | None = None,
        rotation: int = 0,
        audio_from: Path | None = None,
        audio_demuxer: str | None = None,
        start_time: Fraction = Fraction(0),
        audio_until: Fraction | None = None,
    ) -> None:
        import av

        self.path = path
        self.options = options or EncodeOptions()
        self.fps = Fraction(fps)
        if self.fps <= 0:
            raise InvalidInput(f"fps must be positive, got {fps}")
        self.width, self.height = width, height
        self.color = color or ColorInfo()
        self.deep = output_bit_depth(self.color) > 8
        self.frames_written = 0
        self._fmt = container_format(path)
        # Fine enough for exact frame steps plus a start offset (see `_pts`).
        self._tb = Fraction(self.fps.denominator, self.fps.numerator * 1000)
        self._start = Fraction(start_time)
        self._audio_until = audio_until
        self._container: Any = av.open(str(path), mode="w", format=self._fmt)
        try:
            self._stream = self._add_video_stream(rotation)
            self._audio = AudioCarrier(
                self._container, audio_from, self._fmt, source_demuxer=audio_demuxer
            )
        except Exception:
            self._container.close()
            raise
        self._closed = False

    @property
    def audio_mode(self) -> str:
        """What happened to the source audio: "copied", "re-encoded" or "none"."""
        if self._audio.copied:
            return "copied"
        return "re-encoded" if self._audio.reencoded else "none"

    # The encoded size: 4:2:0 needs even dimensions.
    @property
    def coded_size(self) -> tuple[int, int]:
        if self.options.lossless:
            return self.width, self.height
        return self.width + self.width % 2, self.height + self.height % 2

    def _add_video_stream(self, rotation: int) -> Any:
        # ProRes is 10-bit (or 12-bit 4444) already: a deep source keeps its depth through
        # the ordinary ProRes path, fed from 16-bit frames (`_deep_frame`).
        if self.deep and self.options.codec != "prores":
            return self._add_deep_video_stream(rotation)
        opts = self.options
        if opts.codec == "prores":
            name = "prores_ks"
        elif opts.lossless:
            name = "libx264rgb" if opts.codec == "h264" else "libx265"
        else:
            name = "libx264" if opts.codec == "h264" else "libx265"
        stream = self._container.add_stream(name, rate=self.fps)
        width, height = self.coded_size
        stream.width, stream.height = width, height
        stream.pix_fmt = opts.pix_fmt
        codec_opts: dict[str, str] = {"preset": opts.preset}
        if opts.codec == "prores":
            codec_opts = {"profile": str(_PRORES[opts.prores_profile][0])}
        elif opts.codec == "h264":
            codec_opts["crf"] = str(opts.crf)
        else:
            x265 = ["log-level=error"]
            x265.append("lossless=1" if opts.lossless else f"crf={opts.crf}")
            codec_opts["x265-params"] = ":".join(x265)
            codec_opts["tag"] = "hvc1"  # Apple players need hvc1 to play HEVC in MP4
        stream.options = codec_opts
        return self._describe(stream, rotation)

    def _add_deep_video_stream(self, rotation: int) -> Any:
        """10-bit HEVC for a >8-bit source, tagged like the source and carrying its HDR SEI."""
        opts = self.options
        name, pix_fmt = output_codec(opts, self.color)
        stream = self._container.add_stream(name, rate=self.fps)
        stream.width, stream.height = self.coded_size
        stream.pix_fmt = pix_fmt
        x265 = ["log-level=error"]
        x265.append("lossless=1" if opts.lossless else f"crf={opts.crf}")
        x265.extend(hdr_x265_params(self.color))
        stream.options = {"preset": opts.preset, "x265-params": ":".join(x265), "tag": "hvc1"}
        return self._describe(stream, rotation)

    def _describe(self, stream: Any, rotation: int) -> Any:
        """Threads, time base, the colour description and the rotation, for either stream."""
        opts = self.options
        if opts.threads:
            stream.codec_context.thread_count = opts.threads
        cc = stream.codec_context
        cc.time_base = self._tb
        cc.color_range = self.color.range if not opts.lossless else RANGE_FULL
        cc.color_primaries = self.color.primaries
        cc.color_trc = self.color.transfer
        cc.colorspace = MATRIX_RGB if opts.lossless else self.color.matrix
        if rotation % 360:
            stream.set_display_rotation(rotation)
        return stream

    def _deep_frame(self, rgb: np.ndarray) -> Any:
        """(H, W, 3) uint16 RGB -> the 10-bit frame the deep stream encodes."""
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb48le")
        if self.options.codec == "prores":
            out = frame.reformat(
                format=self.options.pix_fmt,
                dst_colorspace=self.color.conversion_matrix(self.height),
                dst_color_range=self.color.conversion_range(),
            )
            # prores_ks writes each frame header's colour description from the frame itself,
            # not from the stream: without these a PQ picture would be read as unspecified.
            out.color_primaries = self.color.primaries
            out.color_trc = self.color.transfer
            return out
        if self.options.lossless:
            return frame.reformat(format=DEEP_LOSSLESS_PIX_FMT)
        return frame.reformat(
            format=DEEP_PIX_FMT,
            dst_colorspace=self.color.conversion_matrix(self.height),
            dst_color_range=self.color.conversion_range(),
        )

    def _pts(self, k: int) -> int:
        return round((self._start + k / self.fps) / self._tb)

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) RGB frame: uint8, or uint16 for a >8-bit source."""
        if self._closed:
            raise RenderError("write() after close()")
        dtype = np.uint16 if self.deep else np.uint8
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != dtype:
            raise RenderError(
                f"frame {self.frames_written} is {rgb.shape} {rgb.dtype}; the writer expects "
                f"({self.height}, {self.width}, 3) {np.dtype(dtype).name}"
            )
        if self.options.watermark:
            rgb = apply_watermark(rgb)
        width, height = self.coded_size
        if (width, height) != (self.width, self.height):
            rgb = np.pad(rgb, ((0, height - self.height), (0, width - self.width), (0, 0)), "edge")
        frame = self._deep_frame(rgb) if self.deep else self._frame_8bit(rgb)
        frame.pts = self._pts(self.frames_written)
        frame.time_base = self._tb
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1
        until = self._start + self.frames_written / self.fps
        if self._audio_until is not None:
            until = min(until, self._audio_until)
        self._audio.pump(until=until)

    def _frame_8bit(self, rgb: np.ndarray) -> Any:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if not self.options.lossless:
            frame = frame.reformat(
                format=self.options.pix_fmt,
                dst_colorspace=self.color.conversion_matrix(self.height),
                dst_color_range=self.color.conversion_range(),
            )
            if self.options.codec == "prores":  # the frame carries its tags (`_deep_frame`)
                frame.color_primaries = self.color.primaries
                frame.color_trc = self.color.transfer
        elif self.options.codec == "hevc":
            frame = frame.reformat(format="gbrp")
        return frame

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and finish the file."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._audio.pump(until=self._audio_until)
            self._audio.stop()
        finally:
            self._audio.close()
            self._container.close()

    def abort(self) -> None:
        """Close without caring about the file; used when a render fails midway."""
        self._closed = True
        try:
            self._audio.close()
        finally:
            self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
