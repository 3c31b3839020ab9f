"""Render options as data: one model for `reframe render`, `pipelines/render.py` and the dispatcher.

`RenderOptions` holds every knob of a render that is not part of the customer's request (which
target fps, whether the output is watermarked): encoder, engine, scene detection and how the
work spreads over a Ray cluster. It has one builder per source:

- `options_from_args(args)` after `add_render_arguments` / `add_cluster_arguments` on an
  argparse parser (both commands share these flags, named and defaulted once, here);
- `RenderOptions.from_settings(settings)` for the service's renders (REFRAME_RENDER_*);
- `RenderOptions.to_argv()` turns options back into those flags, which is how the dispatcher
  hands a job's options to its render driver.

A render of a local file also takes the output choices a job has through the API (quality
preset, sound, slow motion, the first seconds): `add_output_arguments` / `output_from_args`.
A job's own come from the customer's request instead (reframe.jobs.choices).

The engine and video packages never see this module: `encode()` and `scenes()` build their plain
option objects. `parse_fps` is the one parser of frame rates given as text.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from reframe.engine.timeline import as_fraction
from reframe.errors import InvalidInput
from reframe.video.formats import (
    CODECS_BY_CONTAINER,
    PRESET_CRF,
    PRORES_PROFILES,
    QUALITY_PRESETS,
    Container,
    OutputFormat,
    QualityPreset,
    allowed_combinations,
)

if TYPE_CHECKING:
    from reframe.config import Settings
    from reframe.engine.scenes import SceneSettings
    from reframe.video.encode import EncodeOptions

# ProRes is for local renders to .mov (`reframe render --codec prores`); the service's own
# default (REFRAME_RENDER_CODEC) stays h264 or hevc, and a customer picks ProRes per job.
Codec = Literal["h264", "hevc", "prores"]
Precision = Literal["fp32", "bf16", "fp16"]
CODECS: tuple[Codec, ...] = ("h264", "hevc", "prores")
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")
GIB = 1024**3


def parse_fps(value: str | float | int | Fraction) -> Fraction:
    """A frame rate from text or a number: `60`, `59.94` (NTSC: 60000/1001) or `60000/1001`.

    Decimal text goes through the engine's float rule, so `59.94` means the NTSC rate as every
    container writes it; a ratio is taken exactly. The sign is the caller's to judge (a render
    compares the target with the source's rate and says so).
    """
    try:
        if isinstance(value, str):
            text = value.strip()
            fps = Fraction(text) if "/" in text else as_fraction(float(text))
        else:
            fps = as_fraction(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise InvalidInput(
            "a frame rate must be a number such as 60 or 59.94, or a ratio such as "
            f"60000/1001; got {value!r}"
        ) from None
    return fps


def fps_argument(value: str) -> Fraction:
    """`parse_fps` as an argparse `type=` for a positive rate: a bad value is a usage error."""
    try:
        fps = parse_fps(value)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    if fps <= 0:
        raise argparse.ArgumentTypeError("the frame rate must be positive")
    return fps


@dataclass(frozen=True)
class RenderOptions:
    """How to render, apart from what the customer asked for.

    Encoder: `codec`, `crf` (0 = lossless RGB, for measurement), `preset`.
    Engine: `precision` of the convolutions (flows stay fp32), network `scale` (None: by
    resolution), `batch_size` (synthesized frames per forward pass; None: by resolution),
    `device` (None: CUDA when actors get GPUs, else CPU), `threads` (torch threads per
    process or actor; None: every core for a single CPU render, else 1).
    Scenes: `scene_detect` (hard cuts show the nearest real frame), `dedup` (repeated frames
    are bridged), `cut_threshold`.
    Cluster: `chunk_frames` (source frames per chunk), `actors` (interpolator actors; None:
    chosen by the pipeline), `num_gpus` / `num_cpus` per actor (fractions allowed),
    `actor_memory_gb` (what each actor reserves in Ray's scheduler; None: unreserved).
    """

    codec: Codec = "h264"
    crf: int = 18
    preset: str = "medium"
    precision: Precision = "fp32"
    scale: float | None = None
    batch_size: int | None = None
    device: str | None = None
    threads: int | None = None
    scene_detect: bool = True
    dedup: bool = True
    cut_threshold: float | None = None
    chunk_frames: int = 48
    actors: int | None = None
    num_gpus: float = 0.0
    num_cpus: float | None = None
    actor_memory_gb: float | None = None

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise InvalidInput(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.precision not in PRECISIONS:
            raise InvalidInput(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not 0 <= self.crf <= 51:
            raise InvalidInput(f"crf must be between 0 (lossless) and 51, got {self.crf}")
        if self.actors is not None and self.actors < 1:
            raise InvalidInput(f"actors must be at least 1, got {self.actors}")
        if self.num_gpus < 0 or (self.num_cpus is not None and self.num_cpus <= 0):
            raise InvalidInput("num_gpus must be >= 0 and num_cpus > 0")
        if self.chunk_frames < 2:
            raise InvalidInput(f"chunk frames must be at least 2, got {self.chunk_frames}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidInput(f"batch size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise InvalidInput(f"threads must be at least 1, got {self.threads}")
        if self.actor_memory_gb is not None and self.actor_memory_gb <= 0:
            raise InvalidInput(f"actor memory must be positive, got {self.actor_memory_gb} GB")
        if self.cut_threshold is not None and not 0 < self.cut_threshold <= 1:
            raise InvalidInput(f"cut threshold must be in (0, 1], got {self.cut_threshold}")

    # -- derived values ---------------------------------------------------------------------

    @property
    def uses_gpus(self) -> bool:
        return self.num_gpus > 0

    @property
    def resolved_device(self) -> str:
        return self.device or ("cuda" if self.uses_gpus else "cpu")

    @property
    def actor_cpus(self) -> float:
        """CPUs each actor reserves. Without GPUs half a core, so that two actors and Ray Data's
        own tasks still fit on a 2-core machine (whole cores there deadlock the pool)."""
        if self.num_cpus is not None:
            return self.num_cpus
        return 1.0 if self.uses_gpus else 0.5

    @property
    def actor_memory_bytes(self) -> int | None:
        if self.actor_memory_gb is None:
            return None
        return int(self.actor_memory_gb * GIB)

    def replace(self, **changes: Any) -> RenderOptions:
        return dataclasses.replace(self, **changes)

    # -- the engine's and encoder's own option objects --------------------------------------

    def encode(self, *, watermark: bool = False) -> EncodeOptions:
        # The API, the dispatcher and `reframe --help` import this module; the encoder's and
        # the scene detector's modules (numpy, PyAV) load only for a render.
        from reframe.video.encode import EncodeOptions

        return EncodeOptions(
            codec=self.codec, crf=self.crf, preset=self.preset, watermark=watermark
        )

    def scenes(self) -> SceneSettings:
        from reframe.engine.scenes import SceneSettings  # deferred like EncodeOptions above

        kwargs: dict[str, Any] = {
            "detect_cuts": self.scene_detect,
            "detect_duplicates": self.dedup,
        }
        if self.cut_threshold is not None:
            kwargs["cut_threshold"] = self.cut_threshold
        return SceneSettings(**kwargs)

    # -- builders ---------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderOptions:
        """The options the service renders its jobs with (REFRAME_RENDER_* variables)."""
        return cls(
            codec=settings.render_codec,
            crf=settings.render_crf,
            preset=settings.render_preset,
            precision=settings.render_precision,
            chunk_frames=settings.render_chunk_frames,
            actor_memory_gb=settings.render_actor_memory_gb,
        )

    def to_argv(self) -> list[str]:
        """Command-line flags that `options_from_args` turns back into these options (only the
        ones that differ from the defaults, so a command line stays readable)."""
        argv: list[str] = []
        default = RenderOptions()
        for spec in _FLAGS:
            value = getattr(self, spec.field)
            if value == getattr(default, spec.field):
                continue
            if spec.negates:
                argv.append(spec.flag)
            else:
                argv += [spec.flag, str(value)]
        return argv


@dataclass(frozen=True)
class _Flag:
    field: str
    flag: str
    group: Literal["render", "cluster"]
    help: str
    type: Any = None
    choices: tuple[str, ...] | None = None
    negates: bool = False  # a store-true `--no-...` flag that turns a default-on option off


# Each option's flag, named once. `reframe render` and `pipelines/render.py` both build their
# parsers from this table, and `to_argv` writes it back, so the three cannot drift apart.
_FLAGS: tuple[_Flag, ...] = (
    _Flag("codec", "--codec", "render", "output video codec (prores: .mov only)", choices=CODECS),
    _Flag(
        "crf",
        "--crf",
        "render",
        "quality for h264/hevc, lower is better; 0 = lossless RGB (for measurement)",
        type=int,
    ),
    _Flag("preset", "--preset", "render", "x264/x265 speed preset"),
    _Flag(
        "scale",
        "--scale",
        "render",
        "network scale: 1.0 up to 1080p, 0.5 for 4K (default: chosen by resolution)",
        type=float,
    ),
    _Flag("precision", "--precision", "render", "convolution precision", choices=PRECISIONS),
    _Flag(
        "batch_size",
        "--batch-size",
        "render",
        "frames per forward pass (default by size)",
        type=int,
    ),
    _Flag(
        "device",
        "--device",
        "render",
        "torch device, e.g. cpu or cuda (default: cpu, or cuda when actors get GPUs)",
    ),
    _Flag(
        "threads",
        "--threads",
        "render",
        "CPU threads for the network, per actor on Ray (default: all cores for one process "
        "or one actor, else 1)",
        type=int,
    ),
    _Flag(
        "scene_detect",
        "--no-scene-detect",
        "render",
        "interpolate across hard cuts too (normally the nearest real frame is shown)",
        negates=True,
    ),
    _Flag(
        "dedup",
        "--no-dedup",
        "render",
        "treat repeated frames as motion pauses instead of bridging them",
        negates=True,
    ),
    _Flag(
        "cut_threshold",
        "--cut-threshold",
        "render",
        "scene-cut sensitivity in (0, 1]; lower finds more cuts (default 0.4)",
        type=float,
    ),
    _Flag("chunk_frames", "--chunk-frames", "cluster", "source frames per chunk", type=int),
    _Flag(
        "actors",
        "--actors",
        "cluster",
        "interpolator actors (default: 2 with GPUs; 1 on CPU, using every core)",
        type=int,
    ),
    _Flag(
        "num_gpus",
        "--num-gpus",
        "cluster",
        "GPUs per actor, fractions allowed (0: CPU)",
        type=float,
    ),
    _Flag(
        "num_cpus",
        "--num-cpus",
        "cluster",
        "CPUs reserved per actor (default 0.5 without GPUs, 1 with)",
        type=float,
    ),
    _Flag(
        "actor_memory_gb",
        "--actor-memory-gb",
        "cluster",
        "memory each actor reserves in Ray's scheduler (e.g. 5 for 720p on CPU)",
        type=float,
    ),
)


def _add(group: argparse._ArgumentGroup, spec: _Flag) -> None:
    if spec.negates:
        group.add_argument(spec.flag, dest=spec.field, action="store_false", help=spec.help)
        return
    names = [spec.flag]
    if spec.field == "threads":
        # The pipeline's name for it before the options were unified; still accepted.
        names.append("--actor-threads")
    default = getattr(RenderOptions(), spec.field)
    group.add_argument(
        *names,
        dest=spec.field,
        type=spec.type,
        choices=spec.choices,
        default=default,
        help=spec.help,
    )


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """Encoder, engine and scene flags (every render command has them)."""
    group = parser.add_argument_group("render options")
    for spec in _FLAGS:
        if spec.group == "render":
            _add(group, spec)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """How a render spreads over Ray (commands that render on a cluster)."""
    group = parser.add_argument_group("Ray pipeline")
    for spec in _FLAGS:
        if spec.group == "cluster":
            _add(group, spec)


def options_from_args(args: argparse.Namespace) -> RenderOptions:
    """The options a parsed command line asks for; flags a parser lacks keep their defaults."""
    values = {spec.field: getattr(args, spec.field) for spec in _FLAGS if hasattr(args, spec.field)}
    options = RenderOptions(**values)
    options.encode()  # the encoder's and scene detector's own checks, before any work
    options.scenes()
    return options


# -- the output of a local render -----------------------------------------------------------
# What a customer chooses per job through the API (reframe.jobs.choices), as flags of
# `reframe render` and `pipelines/render.py --input`: the quality preset, the sound, slow
# motion and a render of the first seconds. The codec is `--codec` above; the container is the
# output file's extension.

_CONTAINER_BY_SUFFIX: dict[str, Container] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "mkv",
}


def _seconds_argument(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError("the seconds must be a positive number")
    return seconds


def _preset_help() -> str:
    # From the table the API resolves presets with, so the help cannot drift from it.
    return "; ".join(
        f"{codec} CRF " + "/".join(str(crf[p]) for p in QUALITY_PRESETS)
        for codec, crf in PRESET_CRF.items()
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The output choices a customer has on POST /jobs, for a render of a local file."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "--quality",
        choices=QUALITY_PRESETS,
        default=None,
        help=f"a quality preset instead of --crf ({_preset_help()}); for prores it picks the "
        "profile: 422, 422 HQ or 4444 (default high)",
    )
    group.add_argument(
        "--no-audio", dest="audio", action="store_false", help="leave the source's sound out"
    )
    group.add_argument(
        "--playback-fps",
        type=fps_argument,
        default=None,
        metavar="F",
        help="slow motion: the frames rendered at --target-fps play at F (at most the target), "
        "so the clip lasts target/F times longer; the sound is dropped",
    )
    group.add_argument(
        "--seconds",
        type=_seconds_argument,
        default=None,
        metavar="N",
        help="render only the first N seconds, the sound cut with the picture (a quick look "
        "at the settings before the whole clip)",
    )


@dataclass(frozen=True)
class LocalOutput:
    """The checked output flags: the encoder's format, slow motion and how much to render."""

    format: OutputFormat
    playback_fps: Fraction | None = None
    seconds: float | None = None


def output_from_args(
    args: argparse.Namespace, options: RenderOptions, output: Any, target_fps: Fraction
) -> LocalOutput:
    """`LocalOutput` of a parsed command line writing `output` (a path) at `target_fps`; a
    combination the container cannot hold, or a playback rate above the target, is refused
    before any work. Parsers without the output flags get today's defaults."""
    container = _CONTAINER_BY_SUFFIX.get(output.suffix.lower())
    if container is None:
        known = ", ".join(sorted(_CONTAINER_BY_SUFFIX))
        raise InvalidInput(f"{output}: unsupported output extension; use one of {known}")
    if options.codec not in CODECS_BY_CONTAINER[container]:
        raise InvalidInput(
            f"--codec {options.codec} cannot be written to {output.suffix}; allowed "
            f"combinations are {allowed_combinations()}"
        )
    quality: QualityPreset | None = getattr(args, "quality", None)
    playback: Fraction | None = getattr(args, "playback_fps", None)
    if playback is not None and playback > target_fps:
        raise InvalidInput(
            f"--playback-fps ({float(playback):g}) must not exceed --target-fps "
            f"({float(target_fps):g}): slow motion plays the frames rendered at the target "
            "more slowly"
        )
    slow = playback is not None and playback != target_fps
    audio = bool(getattr(args, "audio", True)) and not slow
    if options.codec == "prores":
        fmt = OutputFormat(container, "prores", None, PRORES_PROFILES[quality or "high"], audio)
    else:
        crf = PRESET_CRF[options.codec][quality] if quality else options.crf
        fmt = OutputFormat(container, options.codec, crf, None, audio)
    return LocalOutput(
        format=fmt, playback_fps=playback if slow else None, seconds=getattr(args, "seconds", None)
    )
