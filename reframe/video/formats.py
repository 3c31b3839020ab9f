"""Output formats a customer can choose: containers, the codecs each holds, quality presets.

Plain data and pure functions, so the API (to validate and document), the job driver (to
resolve a job's choices) and the encoder (`EncodeOptions`) read one table.

Quality presets, per codec (the numbers are the encoder's CRF; lower is better and larger):

* H.264 (x264): `standard` 23 (x264's own default: good, small), `high` 18 (the service's
  default, transparent for most footage), `visually_lossless` 14 (headroom for grading or a
  later re-encode).
* HEVC (x265): x265's CRF scale sits about 5 above x264's for the same look (x265's default 28
  is documented as matching x264's 23), so `standard` 28, `high` 23, `visually_lossless` 19.
* ProRes has no CRF: each preset is a ProRes profile. `standard` is ProRes 422, `high` 422 HQ
  (the usual delivery master), `visually_lossless` 4444, which keeps the full chroma the
  interpolator produced (RGB) instead of halving it horizontally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Container = Literal["mp4", "mov", "mkv"]
OutputCodec = Literal["h264", "hevc", "prores"]
QualityPreset = Literal["standard", "high", "visually_lossless"]
ProresProfile = Literal["standard", "hq", "4444"]

CONTAINERS: tuple[Container, ...] = ("mp4", "mov", "mkv")
QUALITY_PRESETS: tuple[QualityPreset, ...] = ("standard", "high", "visually_lossless")

# ProRes is an Apple intermediate: QuickTime is where editors expect it.
CODECS_BY_CONTAINER: dict[Container, tuple[OutputCodec, ...]] = {
    "mp4": ("h264", "hevc"),
    "mov": ("h264", "hevc", "prores"),
    "mkv": ("h264", "hevc"),
}

CONTENT_TYPES: dict[Container, str] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
}

PRESET_CRF: dict[str, dict[QualityPreset, int]] = {
    "h264": {"standard": 23, "high": 18, "visually_lossless": 14},
    "hevc": {"standard": 28, "high": 23, "visually_lossless": 19},
}

PRORES_PROFILES: dict[QualityPreset, ProresProfile] = {
    "standard": "standard",
    "high": "hq",
    "visually_lossless": "4444",
}

# The lowest CRF a customer may ask for: 0 is the lossless-RGB measurement mode (see
# reframe.video.encode), which many players refuse.
MIN_CUSTOMER_CRF = 1
MAX_CRF = 51


def suffix(container: Container) -> str:
    return f".{container}"


def allowed_combinations() -> str:
    """Every container with its codecs, for error messages: `mp4: h264, hevc; mov: ...`."""
    return "; ".join(f"{c}: {', '.join(codecs)}" for c, codecs in CODECS_BY_CONTAINER.items())


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """The resolved output of one render, as plain values for the pipeline and the encoder:
    `crf` for H.264/HEVC, `prores_profile` for ProRes; `audio` False drops the source's sound."""

    container: Container = "mp4"
    codec: OutputCodec = "h264"
    crf: int | None = 18
    prores_profile: ProresProfile | None = None
    audio: bool = True

    @property
    def suffix(self) -> str:
        return suffix(self.container)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.container]

    @property
    def segment_suffix(self) -> str:
        """The container the pipeline's segments are written in before stitching: MP4 (exact
        frame timestamps; Matroska rounds to milliseconds), QuickTime for ProRes."""
        return ".mov" if self.codec == "prores" else ".mp4"
