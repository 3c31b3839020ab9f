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

`probe_video` blocks for up to `limits.timeout_sec`; call it from a worker thread in async code.
The maximum duration is the caller's rule (it is a pricing limit, not a safety one).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from reframe.errors import InvalidMedia, ReframeError

# Demuxers a user's video can reasonably arrive in. Excludes hls, concat, image2, tee and other
# formats that read further files or URLs named inside the input.
ALLOWED_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "mpeg",
    "flv",
    "ogg",
    "asf",
    "h264",
    "hevc",
    "m4v",
    "ivf",
    "yuv4mpegpipe",
    "gif",
    # Probing a plain audio file must say "audio-only", not "unrecognised"; these are harmless.
    "mp3",
    "wav",
    "aac",
    "flac",
)

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
    """The probe itself broke (not the file's fault): 500, details in the server log."""


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
    """What a video is. Colour fields use FFmpeg's names and are None when unspecified."""

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
    stderr_tail = done.stderr.decode("utf-8", "replace")[-2000:]
    raise ProbeFailed(
        f"the video probe failed unexpectedly (exit {done.returncode}): {stderr_tail}"
    )


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
        "protocol_whitelist": "file",
        "format_whitelist": ",".join(ALLOWED_FORMATS),
        "probesize": str(max(32, limits.max_bytes_read)),
        "analyzeduration": str(10_000_000),  # microseconds of media, not of wall time
    }
    try:
        container = av.open(path, mode="r", options=options, metadata_errors="ignore")
    except av.error.EOFError:
        raise InvalidMedia(
            "the file ends before any video data; it is empty or the upload was cut short"
        ) from None
    except av.error.InvalidDataError:
        raise InvalidMedia(
            "this is not a video file we can read: the container is unrecognised or damaged "
            "(a truncated MP4 looks like this); upload an MP4, MOV, MKV or WebM video"
        ) from None
    except av.FFmpegError as exc:
        if "not on whitelist" in str(exc):
            raise InvalidMedia(
                "this is not a video file we can read: playlists, stream descriptions and "
                "other formats that point at further files are not accepted; upload an MP4, "
                "MOV, MKV or WebM video"
            ) from None
        raise InvalidMedia(f"the file could not be opened as a video: {reason(exc)}") from None

    with container:
        attached_pic = av.stream.Disposition.attached_pic
        videos = [s for s in container.streams.video if not (s.disposition & attached_pic)]
        audios = list(container.streams.audio)
        if not videos:
            if audios:
                codec = audios[0].codec_context.name
                raise InvalidMedia(
                    f"the file contains only audio ({codec}) and no video stream; "
                    "upload a video file"
                )
            raise InvalidMedia("the file contains no video stream; upload a video file")
        stream = videos[0]
        ctx = stream.codec_context
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
        first_pts: int | None = None
        last_end: int | None = None
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
                if packet.pts is not None:
                    first_pts = packet.pts if first_pts is None else min(first_pts, packet.pts)
                    end = packet.pts + (packet.duration or 0)
                    last_end = end if last_end is None else max(last_end, end)
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

        time_base = stream.time_base
        duration = 0.0
        if stream.duration and time_base:
            duration = float(stream.duration * time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        elif first_pts is not None and last_end is not None and time_base:
            duration = float((last_end - first_pts) * time_base)
        rate = stream.average_rate or stream.guessed_rate
        if rate is None or rate <= 0:
            if duration <= 0:
                raise InvalidMedia("the video's frame rate and duration cannot be determined")
            fps = count / duration
            fps_fraction = f"{round(fps * 1000)}/1000"
        else:
            fps = float(rate)
            fps_fraction = f"{rate.numerator}/{rate.denominator}"
        if duration <= 0:
            duration = count / fps

        return VideoProbe(
            duration_sec=round(duration, 6),
            fps=fps,
            fps_fraction=fps_fraction,
            width=width,
            height=height,
            codec=str(ctx.name),
            pix_fmt=ctx.pix_fmt,
            frame_count=count,
            has_audio=bool(audios),
            audio_codec=str(audios[0].codec_context.name) if audios else None,
            rotation=int(getattr(first, "rotation", 0) or 0) % 360,
            color_range=_name(_COLOR_RANGE, first.color_range),
            color_primaries=_name(_COLOR_PRIMARIES, first.color_primaries),
            color_transfer=_name(_COLOR_TRANSFER, first.color_trc),
            color_matrix=_name(_COLOR_MATRIX, first.colorspace),
            container=str(container.format.name),
            bit_rate=int(container.bit_rate) if container.bit_rate else None,
        )


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
