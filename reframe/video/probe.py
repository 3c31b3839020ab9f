"""Probe an uploaded video safely: what it is (duration, rate, size, codecs, colour) and whether
it decodes at all, without letting a hostile file hang or exhaust the calling process.

The work happens in a short-lived child Python process that
- has no credentials (a minimal environment), may not write files, and has capped memory and
  CPU time (`resource` limits set by the child on itself before it touches the file);
- opens the file with FFmpeg's `file` protocol only and a whitelist of ordinary containers, so
  playlists and concat lists cannot pull in network URLs or other local files;
- bounds stream analysis (`probesize`/`analyzeduration`), refuses absurd dimensions before
  decoding, counts packets up to a frame limit and decodes only the first frame;
- is killed outright when the wall-clock limit passes.

Rate and duration come from the packets' own timestamps (`reframe.video.timing`, the rules the
renderer plans with), not from the header: a variable-rate phone clip reports its mean rate, a
Matroska file without a default frame duration does not report its 1 ms time base as 1000 fps,
and a header whose duration was rewritten shorter than the frames cannot make a clip cheaper.

When the child fails without an answer (a crash, a bug), its stderr goes to the server log and
the caller gets `ProbeFailed` with a generic message: tracebacks and server paths never reach a
user.

`probe_video` blocks for up to `limits.timeout_sec`; call it from a worker thread in async code.
The maximum duration is the caller's rule (it is a pricing limit, not a safety one).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from reframe.errors import InvalidMedia, ReframeError
from reframe.video.media import open_media
from reframe.video.timing import (
    SINGLE_FRAME,
    StreamTiming,
    clip_duration,
    header_length,
    measure_timing,
)

log = logging.getLogger(__name__)

# FFmpeg's AVColor* enum values (stable across versions); "unspecified" is reported as None.
_COLOR_RANGE = {1: "tv", 2: "pc"}
_COLOR_PRIMARIES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}
_COLOR_TRANSFER = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
_COLOR_MATRIX = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}

# Decoding the first frame may need a few packets (B-frame reordering, broken leading packets);
# more failures than this mean the stream is not decodable.
_MAX_DECODE_ERRORS = 32


class ProbeFailed(ReframeError):
    """The probe itself broke (not the file's fault): 500, details in the server log only."""


PROBE_FAILED_MESSAGE = (
    "The video could not be checked because of a problem on our side; the upload is kept. "
    "Try again in a few minutes, and contact support if it keeps happening."
)


@dataclass(frozen=True)
class ProbeLimits:
    """Bounds on what probing may cost. `max_dimension` caps each side on its own, so a
    1 x 10^6 picture cannot slip under `max_pixels`."""

    timeout_sec: float = 10.0
    max_pixels: int = 4096 * 2304
    max_frames: int = 120 * 240
    max_bytes_read: int = 32 * 1024 * 1024
    max_dimension: int = 8192
    max_memory_bytes: int = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class VideoProbe:
    """What a video is. Colour fields use FFmpeg's names and are None when unspecified.

    `fps` is measured from the frames' timestamps (see `reframe.video.timing`): an exact ratio
    (`fps_fraction`) at a constant rate, the mean over the frames when `variable_frame_rate`.
    `header_fps` is what the container states (avg_frame_rate), a hint that may be wrong or
    missing. `duration_sec` is the longer of the frames' span and the header's duration.
    """

    duration_sec: float
    fps: float
    fps_fraction: str
    width: int
    height: int
    codec: str
    pix_fmt: str | None
    frame_count: int
    has_audio: bool
    audio_codec: str | None
    rotation: int
    color_range: str | None
    color_primaries: str | None
    color_transfer: str | None
    color_matrix: str | None
    container: str
    bit_rate: int | None
    # Added later: defaults keep probes stored before them readable.
    variable_frame_rate: bool = False
    header_fps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoProbe:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def probe_video(path: Path, limits: ProbeLimits) -> VideoProbe:
    """Probe `path` in a child process under `limits`; raise InvalidMedia with the reason when
    the file is not a usable video."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidMedia(f"the file {path.name!r} does not exist") from None
    if not path.is_file():
        raise InvalidMedia(f"{path.name!r} is not a regular file")
    if size == 0:
        raise InvalidMedia("the file is empty; upload the video again")

    package_parent = str(Path(__file__).resolve().parents[2])
    # No credentials or settings reach the child: a decoder exploit would find nothing to steal.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": package_parent,
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [
        sys.executable,
        "-m",
        "reframe.video.probe",
        str(path.resolve()),
        json.dumps(asdict(limits)),
    ]
    try:
        done = subprocess.run(
            command,
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=limits.timeout_sec,
            check=False,
        )
    except subprocess.TimeoutExpired:
        # subprocess.run has already killed (SIGKILL) and reaped the child.
        raise InvalidMedia(
            f"reading this file took longer than {limits.timeout_sec:g} s, so it was stopped; "
            "the file may be damaged or unusually complex — re-encode it (e.g. H.264 in MP4) "
            "and upload again"
        ) from None
    return _parse_child_output(done)


def _parse_child_output(done: subprocess.CompletedProcess[bytes]) -> VideoProbe:
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    result: dict[str, Any] | None = None
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            result = None
    if result is not None and "probe" in result:
        return VideoProbe.from_dict(result["probe"])
    if result is not None and "error" in result:
        raise InvalidMedia(str(result["error"]))
    if done.returncode < 0 or (result is not None and "memory" in result):
        # Killed by a signal (RLIMIT_CPU, a crash) or out of memory: the file made the decoder
        # misbehave, which is the file's problem, not a server fault.
        raise InvalidMedia(
            "the video could not be read within the server's memory and CPU limits; "
            "re-encode it (e.g. H.264 in MP4) and upload again"
        )
    # A bug or a broken installation: the traceback names server paths and code, so it goes to
    # the log for operators, and the user gets a message without it.
    stderr_tail = done.stderr.decode("utf-8", "replace")[-4000:]
    log.error("video probe child exited %s without a result:\n%s", done.returncode, stderr_tail)
    raise ProbeFailed(PROBE_FAILED_MESSAGE)


# --------------------------------------------------------------------------------------------
# Child side. Runs as `python -m reframe.video.probe PATH LIMITS_JSON` and prints one JSON line:
# {"probe": {...}} or {"error": "reason for the user"}.


def _restrict_self(limits: ProbeLimits) -> None:
    import resource

    memory = limits.max_memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = max(1, math.ceil(limits.timeout_sec) + 1)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _name(table: dict[int, str], value: object) -> str | None:
    return table.get(int(value)) if isinstance(value, int) else None


def _probe_in_this_process(path: str, limits: ProbeLimits) -> VideoProbe:
    import av
    import av.logging

    # FFmpeg's own warnings about a broken file would only fill the captured stderr.
    av.logging.set_level(av.logging.PANIC)
    shown = os.path.basename(path)

    def reason(exc: Exception) -> str:
        # FFmpeg messages quote the server-side path; the user only knows their file.
        return str(exc).replace(path, shown)

    options = {
        "probesize": str(max(32, limits.max_bytes_read)),
        "analyzeduration": str(10_000_000),  # microseconds of media, not of wall time
    }
    # open_media's reasons start with the file's name, which the user knows already.
    try:
        container = open_media(path, options=options)
    except InvalidMedia as exc:
        raise InvalidMedia(exc.message.removeprefix(f"{shown}: ")) from None

    with container:
        attached_pic = av.stream.Disposition.attached_pic
        videos = [s for s in container.streams.video if not (s.disposition & attached_pic)]
        audios = list(container.streams.audio)
        if not videos:
            if audios:
                codec = _codec_name(audios[0]) or "an unknown codec"
                raise InvalidMedia(
                    f"the file contains only audio ({codec}) and no video stream; "
                    "upload a video file"
                )
            raise InvalidMedia("the file contains no video stream; upload a video file")
        stream = videos[0]
        ctx = stream.codec_context
        if ctx is None:
            # FFmpeg has no decoder for this stream (PyAV then gives it no codec context).
            raise InvalidMedia(
                "the video stream uses a codec this service cannot decode; re-encode it to "
                "H.264, HEVC, VP9 or AV1 (e.g. an MP4 from any editor) and upload again"
            )
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise InvalidMedia("the video stream has no picture size; the file is damaged")
        if (
            width > limits.max_dimension
            or height > limits.max_dimension
            or width * height > limits.max_pixels
        ):
            raise InvalidMedia(
                f"the video is {width}x{height}, larger than the supported "
                f"{limits.max_pixels:,} pixels per frame (at most {limits.max_dimension} per "
                "side); scale it down and upload again"
            )
        # One decoding thread: the probe needs one frame, not throughput.
        ctx.thread_count = 1

        count = 0
        decode_errors = 0
        first = None
        stamps: list[int] = []  # presentation timestamps of the packets, in time-base ticks
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue  # the demuxer's end-of-stream marker
                count += 1
                if count > limits.max_frames:
                    raise InvalidMedia(
                        f"the video has more than {limits.max_frames:,} frames, over the "
                        "limit; trim it and upload again"
                    )
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None:
                    stamps.append(int(stamp))
                if first is None:
                    try:
                        frames = stream.decode(packet)
                    except av.FFmpegError:
                        decode_errors += 1
                        if decode_errors > _MAX_DECODE_ERRORS:
                            raise InvalidMedia(
                                f"the {ctx.name} video data does not decode; the file is damaged"
                            ) from None
                        continue
                    if frames:
                        first = frames[0]
        except av.FFmpegError as exc:
            raise InvalidMedia(
                f"the file is damaged after {count} video frames ({reason(exc)}); "
                "upload it again or re-encode it"
            ) from None
        if count == 0:
            raise InvalidMedia("the video stream has no frames; upload a video with content")
        if first is None:
            try:
                flushed = stream.decode(None)
            except av.FFmpegError:
                flushed = []
            first = flushed[0] if flushed else None
        if first is None:
            raise InvalidMedia(
                f"no frame of the {ctx.name} video could be decoded; the file is damaged or "
                "uses an unsupported codec"
            )
        declared = int(stream.frames or 0)
        if declared and count < declared:
            raise InvalidMedia(
                f"the file is truncated: its header lists {declared} frames but only {count} "
                "are present; the upload was probably cut short, upload it again"
            )

        time_base = Fraction(stream.time_base) if stream.time_base else None
        header_rate = Fraction(stream.average_rate) if stream.average_rate else None
        hints = [header_rate, Fraction(stream.guessed_rate) if stream.guessed_rate else None]
        header = header_length(
            stream.duration * time_base if stream.duration and time_base else None,
            Fraction(container.duration, 1_000_000) if container.duration else None,
            min(stamps) * time_base if stamps and time_base else Fraction(0),
        )
        timing = _stream_timing(count, stamps, time_base, hints, header)
        duration = clip_duration(header, timing)
        rate = timing.rate

        return VideoProbe(
            duration_sec=round(float(duration), 6),
            fps=float(rate),
            fps_fraction=f"{rate.numerator}/{rate.denominator}",
            width=width,
            height=height,
            codec=str(ctx.name),
            pix_fmt=ctx.pix_fmt,
            frame_count=count,
            has_audio=bool(audios),
            audio_codec=_codec_name(audios[0]) if audios else None,
            rotation=int(getattr(first, "rotation", 0) or 0) % 360,
            color_range=_name(_COLOR_RANGE, first.color_range),
            color_primaries=_name(_COLOR_PRIMARIES, first.color_primaries),
            color_transfer=_name(_COLOR_TRANSFER, first.color_trc),
            color_matrix=_name(_COLOR_MATRIX, first.colorspace),
            container=str(container.format.name),
            bit_rate=int(container.bit_rate) if container.bit_rate else None,
            variable_frame_rate=timing.variable,
            header_fps=float(header_rate) if header_rate else None,
        )


def _codec_name(stream: Any) -> str | None:
    ctx = stream.codec_context
    return str(ctx.name) if ctx is not None else None


def _stream_timing(
    count: int,
    stamps: list[int],
    time_base: Fraction | None,
    hints: list[Fraction | None],
    header: Fraction | None,
) -> StreamTiming:
    """Rate and span from the packets' timestamps; from the header only for the rare stream
    that carries no timestamps at all (some raw elementary streams)."""
    if time_base and len(stamps) == count:
        return measure_timing((s * time_base for s in stamps), tick=time_base, hints=hints)
    if count == 1:
        raise InvalidMedia(SINGLE_FRAME)
    rate = next((h for h in hints if h is not None and h > 0), None)
    if rate is None:
        if not header:
            raise InvalidMedia(
                "the video's frame rate and duration cannot be determined: its frames carry no "
                "timestamps; re-encode it (e.g. H.264 in MP4) and upload again"
            )
        rate = Fraction(count) / header
    span = Fraction(count) / rate
    if span <= 0:
        raise InvalidMedia("the video has zero duration; upload a clip with motion")
    return StreamTiming(frames=count, rate=rate, measured=rate, span=span, variable=False)


def _child_main(argv: list[str]) -> int:
    path, raw_limits = argv[0], argv[1]
    limits = ProbeLimits(**json.loads(raw_limits))
    _restrict_self(limits)
    try:
        out: dict[str, Any] = {"probe": _probe_in_this_process(path, limits).to_dict()}
    except InvalidMedia as exc:
        out = {"error": exc.message}
    except MemoryError:
        out = {"memory": True}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
