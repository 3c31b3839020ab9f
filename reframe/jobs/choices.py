"""The customer's render choices beyond target_fps: output format and slow motion.

Stored at acceptance in `Job.render_options` as ``{"output": {...}, "playback_fps": N}`` with
only what the customer gave (absent keys mean the defaults); other keys (a preview's, say)
belong to other features and are ignored here. `resolve` turns the choices into the plain
`OutputFormat` the pipeline encodes with, filling the gaps with the service's defaults
(REFRAME_RENDER_CODEC / REFRAME_RENDER_CRF: H.264 at CRF 18 unless the operator changed them),
so a job without choices renders exactly as before.

Slow motion: frames synthesized at target_fps are played at playback_fps, so the clip lasts
target_fps / playback_fps times longer. Its sound cannot follow, so it is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from reframe.errors import InvalidInput
from reframe.video.formats import (
    CODECS_BY_CONTAINER,
    CONTAINERS,
    MAX_CRF,
    MIN_CUSTOMER_CRF,
    PRESET_CRF,
    PRORES_PROFILES,
    QUALITY_PRESETS,
    Container,
    OutputCodec,
    OutputFormat,
    QualityPreset,
    allowed_combinations,
)

AudioChoice = Literal["copy", "none"]
Quality = int | QualityPreset

MIN_PLAYBACK_FPS = 24
MAX_PLAYBACK_FPS = 60


@dataclass(frozen=True, slots=True)
class OutputChoice:
    """What the customer asked for; None means "the default"."""

    container: Container | None = None
    codec: OutputCodec | None = None
    quality: Quality | None = None
    audio: AudioChoice | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in (
                ("container", self.container),
                ("codec", self.codec),
                ("quality", self.quality),
                ("audio", self.audio),
            )
            if value is not None
        }


@dataclass(frozen=True, slots=True)
class ResolvedOutput:
    """The output a job renders: the encoder's values and the quality as the customer sees
    it (their preset or CRF, or the default CRF)."""

    format: OutputFormat
    quality: Quality


@dataclass(frozen=True, slots=True)
class RenderChoices:
    output: OutputChoice | None = None
    playback_fps: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RenderChoices:
        """Read `Job.render_options`; unknown keys are someone else's and are left alone."""
        if not data:
            return cls()
        raw = data.get("output")
        output = None
        if isinstance(raw, Mapping):
            output = OutputChoice(
                container=raw.get("container"),
                codec=raw.get("codec"),
                quality=raw.get("quality"),
                audio=raw.get("audio"),
            )
        playback = data.get("playback_fps")
        return cls(output=output, playback_fps=int(playback) if playback is not None else None)

    def to_json(self) -> dict[str, Any]:
        """What acceptance stores: only the keys the customer gave."""
        out: dict[str, Any] = {}
        if self.output is not None:
            out["output"] = self.output.to_json()
        if self.playback_fps is not None:
            out["playback_fps"] = self.playback_fps
        return out

    def slow_motion(self, target_fps: int) -> bool:
        return self.playback_fps is not None and self.playback_fps < target_fps

    def check(self, target_fps: int) -> None:
        """Refuse what cannot be rendered, with a message that names what can."""
        if self.playback_fps is not None:
            if not MIN_PLAYBACK_FPS <= self.playback_fps <= MAX_PLAYBACK_FPS:
                raise InvalidInput(
                    f"playback_fps must be a whole number from {MIN_PLAYBACK_FPS} to "
                    f"{MAX_PLAYBACK_FPS}, got {self.playback_fps}"
                )
            if self.playback_fps > target_fps:
                raise InvalidInput(
                    f"playback_fps ({self.playback_fps}) must not exceed target_fps "
                    f"({target_fps}): slow motion plays the frames rendered at target_fps "
                    "more slowly; raise target_fps or lower playback_fps"
                )
        choice = self.output or OutputChoice()
        if choice.container is not None and choice.container not in CONTAINERS:
            raise InvalidInput(
                f"output.container must be one of {', '.join(CONTAINERS)}, got {choice.container!r}"
            )
        container = _container(choice)
        codecs = CODECS_BY_CONTAINER[container]
        if choice.codec is not None and choice.codec not in codecs:
            raise InvalidInput(
                f"output.codec {choice.codec!r} cannot be written to {container}; allowed "
                f"combinations are {allowed_combinations()}"
            )
        quality = choice.quality
        if isinstance(quality, bool) or not isinstance(quality, int | str | None):
            raise InvalidInput("output.quality must be a crf number or a preset name")
        if isinstance(quality, str) and quality not in QUALITY_PRESETS:
            raise InvalidInput(
                f"output.quality must be a crf number ({MIN_CUSTOMER_CRF}-{MAX_CRF}) or one of "
                f"{', '.join(QUALITY_PRESETS)}, got {quality!r}"
            )
        if isinstance(quality, int):
            if choice.codec == "prores":
                raise InvalidInput(
                    "output.quality for prores is a preset ("
                    f"{', '.join(QUALITY_PRESETS)}), which picks the ProRes profile; a crf "
                    "number applies to h264 and hevc only"
                )
            if not MIN_CUSTOMER_CRF <= quality <= MAX_CRF:
                raise InvalidInput(
                    f"output.quality as a crf must be from {MIN_CUSTOMER_CRF} (best, largest) "
                    f"to {MAX_CRF} (smallest), got {quality}"
                )
        if choice.audio is not None and choice.audio not in ("copy", "none"):
            raise InvalidInput(f"output.audio must be copy or none, got {choice.audio!r}")

    def resolve(
        self, target_fps: int, *, default_codec: str = "h264", default_crf: int = 18
    ) -> ResolvedOutput:
        """The output this job renders, with the service's defaults where nothing was chosen."""
        choice = self.output or OutputChoice()
        codec: OutputCodec = choice.codec or cast(OutputCodec, default_codec)
        container = _container(choice)
        audio = choice.audio != "none" and not self.slow_motion(target_fps)
        if codec == "prores":
            preset: QualityPreset = choice.quality if isinstance(choice.quality, str) else "high"
            fmt = OutputFormat(container, codec, None, PRORES_PROFILES[preset], audio)
            return ResolvedOutput(fmt, preset)
        quality: Quality
        if isinstance(choice.quality, int):
            crf = quality = choice.quality
        elif isinstance(choice.quality, str):
            quality = choice.quality
            crf = PRESET_CRF[codec][choice.quality]
        elif codec == default_codec:
            crf = quality = default_crf
        else:
            quality = "high"
            crf = PRESET_CRF[codec][quality]
        return ResolvedOutput(OutputFormat(container, codec, crf, None, audio), quality)


def _container(choice: OutputChoice) -> Container:
    # ProRes is offered in QuickTime only, so asking for it alone means a .mov.
    if choice.container is not None:
        return choice.container
    return "mov" if choice.codec == "prores" else "mp4"
