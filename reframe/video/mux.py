"""Muxing: join encoded segments into one file without re-encoding them, and add the source's
audio (copied, or re-encoded where the output container cannot hold it).

Every segment was encoded with the same settings and starts on a keyframe, so the compressed
packets can be copied as they are; only their timestamps move. Each segment is placed by the
output frame index it starts at (known from the plan), not by summing durations read back from
containers, so rounding in one segment can never shift the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from reframe.errors import InvalidInput, RenderError
from reframe.video.decode import RANGE_UNSPECIFIED, ColorInfo
from reframe.video.media import open_media

# Audio codecs each container family takes as-is (FFmpeg muxer support).
_COPYABLE_AUDIO: dict[str, frozenset[str] | None] = {
    "mp4": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}),
    "mov": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le", "pcm_f32le"}),
    "matroska": None,  # anything
    "webm": frozenset({"opus", "vorbis"}),
}
_FORMAT_BY_SUFFIX = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
}


def container_format(path: Path) -> str:
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_FORMAT_BY_SUFFIX))
        raise InvalidInput(f"{path}: unsupported output extension; use one of {known}")
    return fmt


def can_copy_audio(fmt: str, audio_codec: str) -> bool:
    allowed = _COPYABLE_AUDIO.get(fmt, frozenset())
    return allowed is None or audio_codec in allowed


@dataclass(frozen=True, slots=True)
class Segment:
    """One encoded chunk: `frames` output frames starting at output frame `start_frame`."""

    path: Path
    start_frame: int
    frames: int


@dataclass(frozen=True, slots=True)
class StitchResult:
    path: Path
    frames: int
    audio_packets: int


def _muxer_options(dest: Path) -> dict[str, str]:
    # Players and browsers can start an MP4 before it is fully downloaded only when the index
    # comes first.
    if dest.suffix.lower() in {".mp4", ".mov", ".m4v"}:
        return {"movflags": "+faststart"}
    return {}


# FFmpeg's "unspecified" for primaries, transfer and matrix.
_UNSPECIFIED = 2


def _apply_color(stream: Any, color: ColorInfo) -> None:
    """Overwrite the template's tags with what `color` specifies; unspecified fields keep the
    segments' own tags."""
    ctx = stream.codec_context
    if color.primaries != _UNSPECIFIED:
        ctx.color_primaries = color.primaries
    if color.transfer != _UNSPECIFIED:
        ctx.color_trc = color.transfer
    if color.matrix != _UNSPECIFIED:
        ctx.colorspace = color.matrix
    if color.range != RANGE_UNSPECIFIED:
        ctx.color_range = color.range


def _check_compatible(first: Any, other: Any, segment: Segment) -> None:
    a, b = first.codec_context, other.codec_context
    mismatches = [
        name
        for name, x, y in (
            ("codec", a.name, b.name),
            ("width", a.width, b.width),
            ("height", a.height, b.height),
            ("pixel format", a.pix_fmt, b.pix_fmt),
            ("codec headers", bytes(a.extradata or b""), bytes(b.extradata or b"")),
        )
        if x != y
    ]
    if mismatches:
        raise RenderError(
            f"segment {segment.path.name} was encoded differently from the first one "
            f"({', '.join(mismatches)}); all segments must share one encoder configuration"
        )


def stitch_segments(
    segments: Sequence[Segment],
    dest: Path,
    *,
    frame_rate: Fraction,
    audio_source: Path | None = None,
    audio_demuxer: str | None = None,
    color: ColorInfo | None = None,
    audio_until: Fraction | None = None,
) -> StitchResult:
    """Write `segments` (in output order) to `dest`, then the first audio stream of
    `audio_source`, if it has one: copied unchanged where `dest`'s container can hold it,
    re-encoded otherwise (PCM from a camera into MP4, say). `audio_demuxer`: the source's
    probed container format (see `reframe.video.media.open_media`). `audio_until`: the
    source time (seconds) where the audio stops, for an output that covers only the start of
    the source (a preview); None copies all of it."""
    import av

    if not segments:
        raise RenderError("there are no segments to stitch")
    expected = 0
    for segment in segments:
        if segment.start_frame != expected:
            raise RenderError(
                f"segment {segment.path.name} starts at output frame {segment.start_frame}, "
                f"expected {expected}: segments are missing or out of order"
            )
        expected += segment.frames

    inputs = [open_media(s.path) for s in segments]
    audio: AudioCarrier | None = None
    try:
        template = inputs[0].streams.video[0]
        with av.open(str(dest), mode="w", options=_muxer_options(dest)) as out:
            video_out = out.add_stream_from_template(template)
            if color is not None:
                _apply_color(video_out, color)
            # Before the first packet: the muxer writes its header then, with every stream.
            audio = AudioCarrier(
                out, audio_source, container_format(dest), source_demuxer=audio_demuxer
            )
            written = 0
            for segment, container in zip(segments, inputs, strict=True):
                written += _copy_segment(container, segment, video_out, template, frame_rate, out)
            audio.pump(until=audio_until)
            audio.stop()
            audio_packets = audio.packets
    finally:
        for container in inputs:
            container.close()
        if audio is not None:
            audio.close()
    if written != expected:
        raise RenderError(f"stitched {written} frames but the plan has {expected}")
    return StitchResult(path=dest, frames=written, audio_packets=audio_packets)


def _copy_segment(
    container: Any,
    segment: Segment,
    video_out: Any,
    template: Any,
    frame_rate: Fraction,
    out: Any,
) -> int:
    stream = container.streams.video[0]
    _check_compatible(template, stream, segment)
    packets = [p for p in container.demux(stream) if p.dts is not None]
    if not packets:
        raise RenderError(f"segment {segment.path.name} holds no video")
    if not packets[0].is_keyframe:
        raise RenderError(
            f"segment {segment.path.name} does not start on a keyframe, so it cannot be joined "
            "without re-encoding"
        )
    if len(packets) != segment.frames:
        raise RenderError(
            f"segment {segment.path.name} holds {len(packets)} frames, the plan says "
            f"{segment.frames}"
        )
    ticks_per_frame = 1 / (frame_rate * stream.time_base)
    if ticks_per_frame.denominator != 1:
        raise RenderError(
            f"segment {segment.path.name} uses time base {stream.time_base}, which cannot place "
            f"frames at {frame_rate} fps exactly"
        )
    first_pts = min(p.pts for p in packets)
    offset = segment.start_frame * int(ticks_per_frame) - first_pts
    for packet in packets:
        packet.pts += offset
        packet.dts += offset
        packet.stream = video_out
        out.mux(packet)
    return len(packets)


class AudioCarrier:
    """Moves the source's first audio stream into the output, in step with the video.

    Packets are pulled lazily up to the video's current time so the muxer can interleave
    without buffering the whole track. Audio before `start` is kept (its timestamps are the
    source's), which the container turns into an edit list where needed.
    """

    def __init__(
        self,
        container: Any,
        source: Path | None,
        fmt: str,
        *,
        source_demuxer: str | None = None,
    ) -> None:
        import av

        self._out_container = container
        self._input: Any = None
        self._packets: Any = None
        self._pending: Any = None
        self._resampler: Any = None
        self._rate = 48000
        self._next_pts: int | None = None  # re-encoding: the next output sample's timestamp
        self.copied = False
        self.reencoded = False
        self.packets = 0  # audio packets muxed into the output
        if source is None:
            return
        self._input = open_media(source, demuxer=source_demuxer)
        if not self._input.streams.audio:
            self._input.close()
            self._input = None
            return
        in_stream = self._input.streams.audio[0]
        codec = str(in_stream.codec_context.name)
        self._in_stream = in_stream
        if can_copy_audio(fmt, codec):
            self._out = container.add_stream_from_template(in_stream)
            self.copied = True
        else:
            target = "libopus" if fmt == "webm" else "aac"
            rate = int(in_stream.codec_context.sample_rate or 48000)
            if target == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                rate = 48000
            self._out = container.add_stream(target, rate=rate)
            # Files often declare only a channel count ("1 channels"), which encoders refuse;
            # the standard layout for that count is what players assume anyway.
            channels = int(in_stream.codec_context.channels or 2)
            layout_name = {1: "mono", 2: "stereo"}.get(channels, f"{channels}.0")
            self._out.layout = layout_name
            self._out.format = "fltp"  # what both AAC and Opus encoders take
            self._resampler = av.AudioResampler(format="fltp", layout=layout_name, rate=rate)
            self._rate = rate
            # Opened now: the muxer writes its header at the first video packet, and an encoder
            # opened after that has no way to declare its parameters (avcodec_open2 fails).
            self._out.codec_context.open()
            self.reencoded = True
        self._tb = Fraction(in_stream.time_base)
        self._packets = self._input.demux(in_stream)

    def pump(self, until: Fraction | None) -> None:
        """Mux audio up to `until` seconds (everything when None)."""
        if self._packets is None:
            return
        while True:
            packet = self._pending
            self._pending = None
            if packet is None:
                packet = next(self._packets, None)
                if packet is None:
                    self._finish()
                    return
            if packet.dts is None and packet.size == 0:
                continue  # demuxer flush marker
            if until is not None and packet.pts is not None and packet.pts * self._tb > until:
                self._pending = packet
                return
            self._mux(packet)

    def stop(self) -> None:
        """End the audio here, flushing a re-encoder: the rest is past the picture's end."""
        if self._packets is not None:
            self._finish()

    def _mux(self, packet: Any) -> None:
        if self.copied:
            packet.stream = self._out
            self._out_container.mux(packet)
            self.packets += 1
            return
        for frame in packet.decode():
            if self._next_pts is None:
                # The video keeps the source's timestamps, so the audio starts where the
                # source's did (clamped at 0: an encoder takes no negative start), not at 0,
                # which would shift it against the picture by the source's offset.
                first = float(frame.time) if frame.time is not None else 0.0
                self._next_pts = max(0, round(first * self._rate))
            for resampled in self._resampler.resample(frame):
                self._encode(resampled)

    def _encode(self, resampled: Any) -> None:
        # Contiguous from the first sample: the resampler's own stamps drift with its delay.
        resampled.pts = self._next_pts or 0
        resampled.time_base = Fraction(1, self._rate)
        self._next_pts = resampled.pts + resampled.samples
        self._mux_encoded(self._out.encode(resampled))

    def _mux_encoded(self, packets: Any) -> None:
        for out in packets:
            self._out_container.mux(out)
            self.packets += 1

    def _finish(self) -> None:
        self._packets = None
        if self.reencoded:
            for resampled in self._resampler.resample(None):
                self._encode(resampled)
            self._mux_encoded(self._out.encode(None))

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None
