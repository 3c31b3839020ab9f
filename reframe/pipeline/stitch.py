"""Join encoded segments into one file without re-encoding them, and add the source's audio
(copied, or re-encoded where the output container cannot hold it).

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

from reframe.errors import RenderError


@dataclass(frozen=True, slots=True)
class Segment:
    """One encoded chunk: `frames` output frames starting at output frame `start_frame`."""

    path: Path
    start_frame: int
    frames: int


@dataclass(frozen=True, slots=True)
class ColourInfo:
    """Colour description written into the output stream (FFmpeg's enum values)."""

    primaries: int | None = None
    transfer: int | None = None
    matrix: int | None = None
    full_range: bool | None = None


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


def _apply_colour(stream: Any, colour: ColourInfo) -> None:
    ctx = stream.codec_context
    if colour.primaries is not None:
        ctx.color_primaries = colour.primaries
    if colour.transfer is not None:
        ctx.color_trc = colour.transfer
    if colour.matrix is not None:
        ctx.colorspace = colour.matrix
    if colour.full_range is not None:
        ctx.color_range = 2 if colour.full_range else 1


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
    colour: ColourInfo | None = None,
) -> StitchResult:
    """Write `segments` (in output order) to `dest`, then the first audio stream of
    `audio_source`, if it has one: copied unchanged where `dest`'s container can hold it,
    re-encoded otherwise (PCM from a camera into MP4, say). `audio_demuxer`: the source's
    probed container format (see `reframe.video.media.open_media`)."""
    import av

    from reframe.video.encode import AudioCarrier, container_format
    from reframe.video.media import open_media

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
            if colour is not None:
                _apply_colour(video_out, colour)
            # Before the first packet: the muxer writes its header then, with every stream.
            audio = AudioCarrier(
                out, audio_source, container_format(dest), source_demuxer=audio_demuxer
            )
            written = 0
            for segment, container in zip(segments, inputs, strict=True):
                written += _copy_segment(container, segment, video_out, template, frame_rate, out)
            audio.pump(until=None)
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
