"""Chunk planning for distributed renders: pure functions, no torch, no Ray, no I/O.

A render's output timeline is a list of output frames; each one reads a contiguous span of
source frames: a single frame (copied), a pair `(i, i + 1)` (interpolated; wider when repeated
frames are skipped), or, at a scene cut, a single frame on one side of it. Planning cuts the
*source* at seams and gives each output frame to exactly one chunk: the chunk whose part of the
source holds the first frame that output reads. A chunk therefore decodes its own frames plus
whatever lies past its end that its outputs read (normally one frame: the halo that closes the
pair across the seam). All outputs of a pair land in one chunk, so every pair is interpolated
once, and the chunks' output ranges tile the timeline without gaps or overlaps.

Seams are placed on keyframes when the caller knows them, so that every actor can start decoding
its chunk without decoding the previous GOP, and on scene cuts, where no pair straddles the seam.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from reframe.errors import InvalidInput

if TYPE_CHECKING:
    from reframe.engine.timeline import Timeline


@dataclass(frozen=True, slots=True)
class SourceSpan:
    """The source frames one output frame reads: `first..last`, both inclusive."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """One unit of distributed work: output frames `out_start:out_stop`, in timeline order,
    made from source frames `decode_start:decode_stop` (its own frames plus the halo that
    closes the pair across its end seam)."""

    index: int
    decode_start: int
    decode_stop: int
    out_start: int
    out_stop: int

    @property
    def source_frames(self) -> int:
        return self.decode_stop - self.decode_start

    @property
    def output_frames(self) -> int:
        return self.out_stop - self.out_start

    def to_row(self) -> dict[str, int]:
        """A flat, Arrow-friendly row for a Ray Dataset."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Chunk:
        return cls(**{name: int(row[name]) for name in cls.__slots__})


def _validate_spans(spans: Sequence[SourceSpan], source_frames: int) -> None:
    if source_frames < 1:
        raise InvalidInput("the source has no frames to render")
    if not spans:
        raise InvalidInput("the output timeline is empty; check the target fps and the clip length")
    previous = 0
    for k, span in enumerate(spans):
        if not 0 <= span.first <= span.last < source_frames:
            raise InvalidInput(
                f"output frame {k} reads source frames {span.first}..{span.last}, outside the "
                f"clip's {source_frames} frames"
            )
        if span.first < previous:
            raise InvalidInput(
                f"output frame {k} reads source frame {span.first} after an earlier output read "
                f"frame {previous}; the timeline must move forward"
            )
        previous = span.first


def _seam_candidates(
    source_frames: int, keyframes: Iterable[int] | None, cuts: Iterable[int]
) -> list[int]:
    """Preferred seams: keyframes and scene cuts (a cut at `i` separates `i - 1` from `i`)."""
    points = set(keyframes or ()) | set(cuts)
    return sorted(p for p in points if 0 < p < source_frames)


def _choose_seams(source_frames: int, chunk_frames: int, candidates: Sequence[int]) -> list[int]:
    """Chunk start frames, beginning with 0.

    With candidates, the seam nearest to `start + chunk_frames` within half a chunk either way
    wins (ties go to the later one, so chunks lean towards their nominal size); when no candidate
    lies in that window the seam falls at the nominal size and the actor decodes the GOP head it
    skips. A tail shorter than half a chunk is merged into the previous chunk rather than
    becoming a chunk of its own.
    """
    starts = [0]
    start = 0
    half = max(1, chunk_frames // 2)
    while source_frames - start >= chunk_frames + half:
        nominal = start + chunk_frames
        seam = nominal
        if candidates:
            lo = bisect.bisect_left(candidates, max(start + 1, nominal - half))
            hi = bisect.bisect_right(candidates, nominal + half)
            window = candidates[lo:hi]
            if window:
                seam = min(window, key=lambda p: (abs(p - nominal), -p))
        if source_frames - seam < half:
            break
        starts.append(seam)
        start = seam
    return starts


def plan_chunks(
    spans: Sequence[SourceSpan],
    source_frames: int,
    *,
    chunk_frames: int,
    keyframes: Iterable[int] | None = None,
    cuts: Iterable[int] = (),
    output_seams: Sequence[int] | None = None,
) -> list[Chunk]:
    """Split a render into chunks of about `chunk_frames` source frames.

    `spans[k]` is what output frame `k` reads (see module docstring); `keyframes` are source
    indices of keyframes (0 is implied); `cuts` are scene cuts, each the index of the first frame
    of a new scene. `output_seams`, when given, are the only output indices a chunk may start at
    (see `batch_starts`): each seam moves forward to the next allowed one, which only lengthens
    the earlier chunk's halo. Chunks that would own no output frame are dropped, so every chunk
    returned produces at least one frame.
    """
    if chunk_frames < 2:
        raise InvalidInput(f"chunk size must be at least 2 source frames, got {chunk_frames}")
    _validate_spans(spans, source_frames)
    candidates = _seam_candidates(source_frames, keyframes, cuts)
    source_seams = _choose_seams(source_frames, chunk_frames, candidates)
    firsts = [span.first for span in spans]
    allowed = sorted(set(output_seams)) if output_seams is not None else None

    bounds = [0]
    for seam in source_seams[1:]:
        # The chunk starting at this source frame owns the outputs that start reading there.
        out = bisect.bisect_left(firsts, seam)
        if allowed is not None:
            at = bisect.bisect_left(allowed, out)
            out = allowed[at] if at < len(allowed) else len(spans)
        if bounds[-1] < out < len(spans):
            bounds.append(out)
    bounds.append(len(spans))

    chunks: list[Chunk] = []
    for out_start, out_stop in itertools.pairwise(bounds):
        chunks.append(
            Chunk(
                index=len(chunks),
                decode_start=spans[out_start].first,
                decode_stop=1 + max(spans[k].last for k in range(out_start, out_stop)),
                out_start=out_start,
                out_stop=out_stop,
            )
        )
    return chunks


def batch_starts(spans: Sequence[SourceSpan], batch_size: int) -> list[int]:
    """Output indices where `reframe.engine.render_core.render_frames` starts a fresh batch.

    A chunk that starts and ends on such indices is batched exactly like the same outputs in a
    single-process render, which matters because the network's float results depend (by a
    rounding step, at small sizes) on which frames share a forward pass. This mirrors the
    flush rule of `render_frames` step for step (a test runs both against each other): a new
    pair that would overflow a batch with synthesized frames in it starts a new batch, and a
    copied frame ends the batch once it is full or long.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch size must be at least 1, got {batch_size}")
    starts = [0]
    pending = 0
    in_batch = 0
    n = len(spans)
    for k, span in enumerate(spans):
        synthesized = span.first != span.last
        new_pair = synthesized and (k == 0 or spans[k - 1] != span)
        if new_pair:
            group_end = k
            while group_end < n and spans[group_end] == span:
                group_end += 1
            if in_batch and in_batch + (group_end - k) > batch_size:
                starts.append(k)
                pending = in_batch = 0
        pending += 1
        if synthesized:
            in_batch += 1
        elif in_batch >= batch_size or pending >= 4 * batch_size:
            if k + 1 < n:
                starts.append(k + 1)
            pending = in_batch = 0
    return starts


def check_plan(chunks: Sequence[Chunk], spans: Sequence[SourceSpan], source_frames: int) -> None:
    """Raise `AssertionError` unless the plan tiles the output timeline exactly and every chunk
    decodes what its outputs read (used by tests and the benchmark)."""
    if not chunks:
        raise AssertionError("empty plan")
    expected_out = 0
    for n, chunk in enumerate(chunks):
        if chunk.index != n:
            raise AssertionError(f"chunk {n} has index {chunk.index}")
        if chunk.out_start != expected_out:
            raise AssertionError(f"chunk {n} does not start where chunk {n - 1} ended")
        if chunk.output_frames < 1:
            raise AssertionError(f"chunk {n} renders nothing")
        for k in range(chunk.out_start, chunk.out_stop):
            span = spans[k]
            if span.first < chunk.decode_start or span.last >= chunk.decode_stop:
                raise AssertionError(f"output {k} reads frames chunk {n} does not decode")
        if not 0 <= chunk.decode_start < chunk.decode_stop <= source_frames:
            raise AssertionError(f"chunk {n} decodes outside the source")
        expected_out = chunk.out_stop
    if expected_out != len(spans):
        raise AssertionError("the plan does not cover the whole timeline")


def spans_from_timeline(timeline: Timeline) -> list[SourceSpan]:
    """What each output frame of an engine timeline reads (repeats between anchors are skipped,
    so a pair may span several source frames; cuts leave single frames)."""
    return [SourceSpan(frame.left, frame.right) for frame in timeline.frames]


def plan_timeline_chunks(
    timeline: Timeline,
    *,
    chunk_frames: int,
    keyframes: Iterable[int] | None = None,
    batch_size: int | None = None,
) -> list[Chunk]:
    """Chunks for an engine timeline, with seams preferring its scene cuts and `keyframes`,
    and, with `batch_size`, only where a single-process render starts a batch."""
    spans = spans_from_timeline(timeline)
    return plan_chunks(
        spans,
        len(timeline.source_times),
        chunk_frames=chunk_frames,
        keyframes=keyframes,
        cuts=sorted(timeline.cuts),
        output_seams=batch_starts(spans, batch_size) if batch_size is not None else None,
    )
