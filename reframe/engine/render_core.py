"""The render core: decoded source frames + a timeline -> output frames, streamed in batches.

Three entry points, from the smallest to the whole job:

`render_frames(source, outputs, interpolator)`
    The heart. `source` yields `DecodedFrame`s in index order covering
    `timeline.source_span(a, b)`; `outputs` is `timeline.frames[a:b]`. Yields one
    `RenderedFrame` per output, in order. Only the source frames still needed are held, and at
    most `batch_size` synthesized frames are in flight, so memory does not grow with the clip.

`render_chunk(path, timeline, start, stop, interpolator, frame_pts=...)`
    Output frames ``[start, stop)`` of a planned render, decoding just the source frames they
    need (seeking to the keyframe before them when `frame_pts` is given). This is what a Ray
    actor calls for its chunk; concatenating the chunks of ``[0, len(timeline))`` gives the
    frames of a single-process render: the same copies and the same pairs and timesteps (a
    batch is made of whole source pairs, so a pair is never split). Synthesized pixels can
    differ by float rounding only if the network's results depend on how pairs are batched.

`render_file(input, output, target_fps, interpolator, ...)`
    The local `reframe render`: analyse (cuts, duplicates) -> plan -> render -> encode with the
    source's audio, colour tags and rotation. `plan_render` is its first half on its own.

Depth: an 8-bit source renders as uint8 RGB, exactly as it always has; a deeper one (10- or
12-bit, HDR) decodes to uint16 RGB (`render_depth`), goes to the network normalised by 65535
and comes back as uint16, so synthesized frames are never cut to 256 levels.

Every function takes any `FrameInterpolator`; the real one is
`reframe.engine.inference.Interpolator`. When the interpolator accepts a `pair_index` keyword
(the real one does), each source pair is sent once with all of its timesteps, so the network
encodes the pair once instead of once per output frame.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reframe.engine.scenes import analyze_video
from reframe.engine.timeline import OutputFrame, Timeline, as_fraction, plan_timeline
from reframe.errors import InvalidInput, RenderError
from reframe.video.decode import iter_frames, read_video_info
from reframe.video.encode import VideoWriter
from reframe.video.mux import container_format
from reframe.video.timing import (
    SOURCE_FPS_DECIMALS,
    StreamTiming,
    clip_duration,
    exceeds_source,
    measure_timing,
    rounded_fps,
)

if TYPE_CHECKING:
    import torch

    from reframe.engine.protocols import FrameInterpolator
    from reframe.engine.scenes import SceneSettings, SourceAnalysis
    from reframe.video.decode import ColorInfo, DecodedFrame, VideoInfo
    from reframe.video.encode import EncodeOptions

ProgressCallback = Callable[[int, int], None]  # (frames done, frames total)


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    index: int  # output frame number in the whole timeline
    rgb: np.ndarray  # (H, W, 3) uint8, or uint16 for a >8-bit source (see render_depth)
    synthesized: bool


def default_batch_size(width: int, height: int) -> int:
    """Synthesized frames per forward pass: 8 at 720p and below, fewer for bigger pictures."""
    return int(max(1, min(8, (8 * 1280 * 720) // max(1, width * height))))


def _accepts_pair_index(interpolator: FrameInterpolator) -> bool:
    try:
        params = inspect.signature(interpolator.interpolate).parameters
    except (TypeError, ValueError):
        return False
    return "pair_index" in params


def _device_of(interpolator: FrameInterpolator) -> Any:
    return getattr(interpolator, "device", "cpu")


def render_depth(color: ColorInfo) -> int:
    """The decode depth for a source: 8 (uint8 RGB) for 8-bit sources, 16 (uint16) above."""
    return 8 if color.bit_depth <= 8 else 16


def _to_tensor(frames: Sequence[np.ndarray], device: Any) -> torch.Tensor:
    import torch

    if frames[0].dtype == np.uint16:
        # torch has no arithmetic on uint16: widen first; 65535 maps full scale to 1.0.
        wide = torch.from_numpy(np.stack(frames).astype(np.int32)).permute(0, 3, 1, 2)
        return wide.to(device=device, dtype=torch.float32).div_(65535.0)
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    return batch.to(device=device, dtype=torch.float32).div_(255.0)


def _to_uint8(batch: torch.Tensor) -> list[np.ndarray]:
    import torch

    rgb = batch.clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    array = rgb.permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in array]


def _to_uint16(batch: torch.Tensor) -> list[np.ndarray]:
    import torch

    levels = batch.clamp(0.0, 1.0).mul(65535.0).round_().to(torch.int32)
    array = levels.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint16)
    return [np.ascontiguousarray(a) for a in array]


class FlipEnsemble:
    """Averages the network's answer with its answer on mirrored frames (test-time ensemble).

    Flow networks are not exactly mirror-symmetric, so the two estimates err differently and
    their mean is a little closer to the truth; it costs two forward passes per frame. Wraps
    any `FrameInterpolator` and passes `pair_index` through when the inner one takes it.
    """

    def __init__(self, inner: FrameInterpolator) -> None:
        self.inner = inner
        self.device = _device_of(inner)
        self._pair_index = _accepts_pair_index(inner)

    def interpolate(
        self,
        img0: torch.Tensor,
        img1: torch.Tensor,
        timestep: torch.Tensor,
        *,
        pair_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            if pair_index is None:
                if a.shape[0] != timestep.shape[0]:
                    raise RenderError("pair_index is required when pairs are shared")
                return self.inner.interpolate(a, b, timestep)
            if self._pair_index:
                return self.inner.interpolate(a, b, timestep, pair_index=pair_index)  # type: ignore[call-arg]
            return self.inner.interpolate(a[pair_index], b[pair_index], timestep)

        plain = run(img0, img1)
        mirrored = run(img0.flip(-1), img1.flip(-1)).flip(-1)
        return (plain + mirrored) * 0.5


def render_frames(
    source: Iterable[DecodedFrame],
    outputs: Sequence[OutputFrame],
    interpolator: FrameInterpolator,
    *,
    batch_size: int = 8,
) -> Iterator[RenderedFrame]:
    """Yield the output frames `outputs` (a contiguous, ordered slice of a timeline).

    `source` must yield at least the frames of `timeline.source_span(...)` for that slice, in
    index order; frames before the span are skipped. Copied frames are the decoded arrays
    themselves (bit-exact); synthesized frames come from `interpolator` in batches of whole
    source pairs, up to `batch_size` frames (a pair with more timesteps goes alone).
    """
    if batch_size < 1:
        raise InvalidInput(f"batch size must be at least 1, got {batch_size}")
    frames_iter = iter(source)
    held: dict[int, np.ndarray] = {}
    newest = -1
    use_pair_index = _accepts_pair_index(interpolator)
    device = _device_of(interpolator)

    def fetch(index: int) -> np.ndarray:
        nonlocal newest
        while index not in held:
            decoded = next(frames_iter, None)
            if decoded is None:
                raise RenderError(
                    f"source frame {index} is missing: the source ended after frame {newest}"
                )
            if decoded.index > index and index not in held:
                raise RenderError(f"source frame {index} was skipped by the decoder")
            held[decoded.index] = decoded.rgb
            newest = decoded.index
        return held[index]

    pending: list[OutputFrame] = []

    def flush() -> Iterator[RenderedFrame]:
        synth = [o for o in pending if o.synthesized]
        made: dict[int, np.ndarray] = {}
        if synth:
            made = dict(
                zip(
                    (o.index for o in synth),
                    _interpolate(synth, held, interpolator, device, use_pair_index),
                    strict=True,
                )
            )
        for o in pending:
            if o.synthesized:
                yield RenderedFrame(o.index, made[o.index], True)
            else:
                yield RenderedFrame(o.index, held[o.left], False)
        # Everything before the oldest frame still needed can go.
        if pending:
            keep_from = pending[-1].left
            for stale in [i for i in held if i < keep_from]:
                del held[stale]
        pending.clear()

    in_batch = 0
    for k, out in enumerate(outputs):
        fetch(out.left)
        fetch(out.right)
        starts_new_pair = out.synthesized and (
            k == 0 or (outputs[k - 1].left, outputs[k - 1].right) != (out.left, out.right)
        )
        if starts_new_pair and in_batch:
            group = _pair_group_size(outputs, k)
            if in_batch + group > batch_size:
                yield from flush()
                in_batch = 0
        pending.append(out)
        if out.synthesized:
            in_batch += 1
        elif in_batch >= batch_size or len(pending) >= 4 * batch_size:
            yield from flush()
            in_batch = 0
    yield from flush()


def _pair_group_size(outputs: Sequence[OutputFrame], k: int) -> int:
    pair = (outputs[k].left, outputs[k].right)
    n = 0
    while k + n < len(outputs) and (outputs[k + n].left, outputs[k + n].right) == pair:
        n += 1
    return n


def _interpolate(
    synth: Sequence[OutputFrame],
    held: dict[int, np.ndarray],
    interpolator: FrameInterpolator,
    device: Any,
    use_pair_index: bool,
) -> list[np.ndarray]:
    import torch

    timesteps = torch.tensor([o.t for o in synth], dtype=torch.float32, device=device)
    if use_pair_index:
        pairs: list[tuple[int, int]] = []
        index: list[int] = []
        for o in synth:
            if not pairs or pairs[-1] != (o.left, o.right):
                pairs.append((o.left, o.right))
            index.append(len(pairs) - 1)
        img0 = _to_tensor([held[a] for a, _ in pairs], device)
        img1 = _to_tensor([held[b] for _, b in pairs], device)
        pair_index = torch.tensor(index, dtype=torch.long, device=device)
        result = interpolator.interpolate(img0, img1, timesteps, pair_index=pair_index)  # type: ignore[call-arg]
    else:
        img0 = _to_tensor([held[o.left] for o in synth], device)
        img1 = _to_tensor([held[o.right] for o in synth], device)
        result = interpolator.interpolate(img0, img1, timesteps)
    if tuple(result.shape) != (len(synth), *img0.shape[1:]):
        raise RenderError(
            f"the interpolator returned {tuple(result.shape)} for {len(synth)} frames of "
            f"{tuple(img0.shape[1:])}"
        )
    if held[synth[0].left].dtype == np.uint16:
        return _to_uint16(result)
    return _to_uint8(result)


def render_chunk(
    path: Path,
    timeline: Timeline,
    start: int,
    stop: int,
    interpolator: FrameInterpolator,
    *,
    frame_pts: Sequence[int] | None = None,
    batch_size: int = 8,
    threads: int | None = None,
    demuxer: str | None = None,
    depth: int = 8,
) -> Iterator[RenderedFrame]:
    """Output frames ``[start, stop)`` of `timeline`, decoding only what they need from `path`.

    `frame_pts` (e.g. `SourceAnalysis.pts`) lets the decoder seek instead of reading from the
    top; `demuxer` is the source's container format (`VideoInfo.demuxer`); `depth` is
    `render_depth` of the source's colour. The frames come out in order with their global
    output index.
    """
    span = timeline.source_span(start, stop)
    source = iter_frames(
        path,
        start=span.start,
        stop=span.stop,
        frame_pts=frame_pts,
        threads=threads,
        demuxer=demuxer,
        depth=depth,
    )
    return render_frames(source, timeline.frames[start:stop], interpolator, batch_size=batch_size)


@dataclass(frozen=True)
class RenderPlan:
    info: VideoInfo
    analysis: SourceAnalysis
    timeline: Timeline
    source_fps: Fraction
    partial: bool = False  # only the first seconds (`plan_render`'s max_seconds)

    @property
    def audio_until(self) -> Fraction | None:
        """Where the sound ends on the source's clock: with the picture for a render of the
        first seconds (a preview), nowhere (all of it) for a whole clip."""
        if not self.partial:
            return None
        return self.analysis.times[0] + self.timeline.duration


@dataclass
class RenderReport:
    output: Path
    frames: int
    synthesized: int
    source_frames: int
    cuts: int
    duplicates: int
    seconds: float
    audio: str = "none"  # "copied", "re-encoded" or "none"
    extra: dict[str, float] = field(default_factory=dict)


def source_timing(info: VideoInfo, analysis: SourceAnalysis) -> StreamTiming:
    """The source's rate and span from its decoded frames' timestamps, measured by the same
    rules as the probe that priced it (`reframe.video.timing`)."""
    return measure_timing(analysis.times, tick=info.time_base, hints=(info.average_rate,))


def plan_render(
    path: Path,
    target_fps: Fraction | float | int | str,
    *,
    scenes: SceneSettings | None = None,
    demuxer: str | None = None,
    max_seconds: Fraction | float | None = None,
) -> RenderPlan:
    """Read the source once at thumbnail size, detect cuts and repeats, plan the output.

    `max_seconds`: plan only the first seconds of output (a preview; `Timeline.head`); the
    whole clip is still analysed, so cuts and repeats are judged as in the full render.

    The timeline follows the frames' real timestamps (variable rate included) and lasts
    `clip_duration`: the frames' span, or the header's duration when that is longer, the same
    length the probe priced. `demuxer`: the container format the probe found, so the render
    reads the file the way it was priced (None: detected, under the same whitelist).
    """
    fps = as_fraction(target_fps)
    info = read_video_info(path, demuxer=demuxer)
    analysis = analyze_video(path, scenes, demuxer=info.demuxer)
    timing = source_timing(info, analysis)
    if not exceeds_source(fps, timing.rate):
        raise InvalidInput(
            f"target fps {float(fps):g} must be above the source's "
            f"{float(timing.rate):.3f} fps (compared at {SOURCE_FPS_DECIMALS} decimals, "
            f"{float(rounded_fps(timing.rate)):.{SOURCE_FPS_DECIMALS}f}); pick a higher "
            "--target-fps"
        )
    timeline = plan_timeline(
        analysis.times,
        fps,
        duration=clip_duration(info.duration, timing),
        anchors=analysis.anchors,
        cuts=analysis.cuts,
    )
    whole = timeline
    if max_seconds is not None:
        timeline = timeline.head(max_seconds)
    return RenderPlan(
        info=info,
        analysis=analysis,
        timeline=timeline,
        source_fps=timing.rate,
        # A head as long as the clip is the whole clip, sound and all.
        partial=timeline is not whole,
    )


def render_file(
    source: Path,
    output: Path,
    target_fps: Fraction | float | int | str,
    interpolator: FrameInterpolator,
    *,
    encode: EncodeOptions | None = None,
    scenes: SceneSettings | None = None,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    plan: RenderPlan | None = None,
    audio: bool = True,
    playback_fps: Fraction | None = None,
) -> RenderReport:
    """Render `source` to `output` at `target_fps` on this machine (the `reframe render` work).

    `plan`: from `plan_render` (made here when None; pass one made with `max_seconds` to render
    only the first seconds, the sound cut with the picture). `audio` False drops the sound.
    `playback_fps`: slow motion, the frames synthesized at `target_fps` are stamped at this
    rate instead, from 0 and without sound (as the Ray pipeline's `run_render` does).

    The output is written to a temporary name next to `output` and moved into place only when
    complete, so a failed render never leaves a truncated file under the requested name.
    """
    container_format(output)  # refuse an unknown extension before the analysis pass
    started = time.perf_counter()
    plan = plan or plan_render(source, target_fps, scenes=scenes)
    info, timeline = plan.info, plan.timeline
    slow = playback_fps is not None and playback_fps != timeline.target_fps
    batch = batch_size or default_batch_size(info.width, info.height)
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    total = len(timeline)
    writer = VideoWriter(
        partial,
        width=info.width,
        height=info.height,
        fps=playback_fps if slow and playback_fps is not None else timeline.target_fps,
        options=encode,
        color=info.color,
        rotation=info.rotation,
        audio_from=source if audio and not slow else None,
        audio_demuxer=info.demuxer,
        # Slow motion starts at 0: there is no sound to stay in step with.
        start_time=Fraction(0) if slow else plan.analysis.times[0],
        audio_until=plan.audio_until,
    )
    try:
        with writer:
            frames = render_chunk(
                source,
                timeline,
                0,
                total,
                interpolator,
                frame_pts=None,
                batch_size=batch,
                demuxer=info.demuxer,
                depth=render_depth(info.color),
            )
            for done, frame in enumerate(frames, start=1):
                writer.write(frame.rgb)
                if progress is not None:
                    progress(done, total)
        if writer.frames_written != total:
            raise RenderError(f"wrote {writer.frames_written} frames, planned {total}")
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return RenderReport(
        output=output,
        frames=total,
        synthesized=timeline.synthesized_count,
        source_frames=len(plan.analysis),
        cuts=len(plan.analysis.cuts),
        duplicates=len(plan.analysis.duplicates),
        seconds=time.perf_counter() - started,
        audio=writer.audio_mode,
    )
