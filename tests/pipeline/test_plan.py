"""Chunk planning: seams, halos and exact ownership of every output frame."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from reframe.errors import InvalidInput
from reframe.pipeline.plan import (
    Chunk,
    SourceSpan,
    check_plan,
    plan_chunks,
    plan_timeline_chunks,
)


def cfr_spans(source_frames: int, source_fps: int, target_fps: int, cuts: set[int] = frozenset()):  # type: ignore[assignment]
    """A reference timeline: output k at k / target_fps over a constant-rate source.

    Pairs across a scene cut are replaced by the nearer side, the way cut handling does it.
    """
    spans = []
    k = 0
    while True:
        position = Fraction(k * source_fps, target_fps)
        if position > source_frames - 1:
            break
        i = int(position)
        frac = position - i
        if frac == 0:
            spans.append(SourceSpan(i, i))
        elif i + 1 in cuts:
            side = i if frac < Fraction(1, 2) else i + 1
            spans.append(SourceSpan(side, side))
        else:
            spans.append(SourceSpan(i, i + 1))
        k += 1
    return spans


def starts(chunks: list[Chunk], spans: list[SourceSpan]) -> list[int]:
    """The source frame each chunk's first output reads: where the seams fell."""
    return [spans[c.out_start].first for c in chunks]


def halos(chunks: list[Chunk]) -> list[int]:
    """Frames each chunk decodes past the next chunk's start (0 for the last)."""
    nxt = [c.decode_start for c in chunks[1:]]
    return [max(0, c.decode_stop - s) for c, s in zip(chunks, nxt, strict=False)] + [0]


def owned(chunks: list[Chunk]) -> list[int]:
    return [k for c in chunks for k in range(c.out_start, c.out_stop)]


def pairs_interpolated(chunks: list[Chunk], spans: list[SourceSpan]) -> list[tuple[int, int]]:
    """Each distinct pair each chunk interpolates (a pair may serve several outputs)."""
    result = []
    for c in chunks:
        seen = {(spans[k].first, spans[k].last) for k in range(c.out_start, c.out_stop)}
        result += [p for p in sorted(seen) if p[0] != p[1]]
    return result


def test_one_chunk_clip_has_no_halo() -> None:
    spans = cfr_spans(10, 24, 60)
    chunks = plan_chunks(spans, 10, chunk_frames=32)
    assert chunks == [Chunk(0, 0, 10, 0, len(spans))]


def test_first_and_last_chunks_and_one_frame_halos() -> None:
    spans = cfr_spans(100, 24, 60)
    chunks = plan_chunks(spans, 100, chunk_frames=32)
    check_plan(chunks, spans, 100)
    assert [(c.decode_start, c.decode_stop) for c in chunks] == [(0, 33), (32, 65), (64, 100)]
    assert halos(chunks) == [1, 1, 0]
    assert chunks[0].out_start == 0
    assert chunks[-1].out_stop == len(spans)
    # 2.5 outputs per source frame: chunk 1 starts exactly at source frame 32 = output 80.
    assert chunks[1].out_start == 80
    assert spans[79] == SourceSpan(31, 32)  # closed by chunk 0's halo, not by chunk 1


def test_short_tail_is_merged_not_a_chunk_of_its_own() -> None:
    spans = cfr_spans(70, 24, 48)
    chunks = plan_chunks(spans, 70, chunk_frames=32)
    assert [(c.decode_start, c.decode_stop) for c in chunks] == [(0, 33), (32, 70)]


def test_seams_snap_to_nearby_keyframes() -> None:
    spans = cfr_spans(120, 24, 60)
    chunks = plan_chunks(spans, 120, chunk_frames=32, keyframes=[0, 25, 37, 70, 100])
    check_plan(chunks, spans, 120)
    # 37 is nearer to 32 than 25; from 37, 70 is nearest to 69; 100 is nearest to 102.
    assert starts(chunks, spans) == [0, 37, 70, 100]


def test_far_keyframes_fall_back_to_nominal_seams() -> None:
    spans = cfr_spans(100, 24, 60)
    chunks = plan_chunks(spans, 100, chunk_frames=20, keyframes=[0, 95])
    check_plan(chunks, spans, 100)
    assert starts(chunks, spans) == [0, 20, 40, 60, 80]


def test_scene_cut_on_a_seam_needs_no_halo_and_is_owned_once() -> None:
    spans = cfr_spans(64, 24, 60, cuts={32})
    chunks = plan_chunks(spans, 64, chunk_frames=32, cuts=[32])
    check_plan(chunks, spans, 64)
    assert starts(chunks, spans) == [0, 32]
    # Across the cut the outputs copy frame 31 or 32; none reads both, so chunk 0 stops at 31
    # and the outputs nearer frame 32 belong to chunk 1.
    assert chunks[0].decode_stop == 32
    assert all(spans[k].last <= 31 for k in range(chunks[0].out_start, chunks[0].out_stop))
    assert spans[chunks[1].out_start] == SourceSpan(32, 32)
    assert sorted(owned(chunks)) == list(range(len(spans)))


def test_cut_near_a_nominal_seam_becomes_the_seam() -> None:
    spans = cfr_spans(96, 24, 60, cuts={30})
    chunks = plan_chunks(spans, 96, chunk_frames=32, keyframes=[0], cuts=[30])
    assert starts(chunks, spans)[1] == 30


def test_every_pair_is_interpolated_exactly_once() -> None:
    spans = cfr_spans(101, 25, 60)
    chunks = plan_chunks(spans, 101, chunk_frames=16)
    pairs = pairs_interpolated(chunks, spans)
    assert len(pairs) == len(set(pairs)) == 100  # all of (i, i + 1) for i < 100


def test_chunk_rows_round_trip() -> None:
    chunk = Chunk(3, 10, 21, 25, 50)
    assert Chunk.from_row(chunk.to_row()) == chunk
    assert chunk.source_frames == 11
    assert chunk.output_frames == 25


@pytest.mark.parametrize(
    ("spans", "frames", "size", "message"),
    [
        ([], 10, 8, "timeline is empty"),
        ([SourceSpan(0, 0)], 0, 8, "no frames"),
        ([SourceSpan(0, 12)], 10, 8, "outside the clip"),
        ([SourceSpan(3, 3), SourceSpan(1, 1)], 10, 8, "move forward"),
        ([SourceSpan(0, 0)], 10, 1, "at least 2"),
    ],
)
def test_invalid_plans_are_refused(
    spans: list[SourceSpan], frames: int, size: int, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan_chunks(spans, frames, chunk_frames=size)


def test_property_owned_outputs_tile_the_timeline() -> None:
    rng = random.Random(4)
    for _ in range(400):
        source_frames = rng.randint(1, 300)
        source_fps = rng.choice([24, 25, 30, 50])
        target_fps = rng.choice([f for f in (30, 48, 60, 120, 144, 240) if f > source_fps])
        cuts = (
            {rng.randrange(1, source_frames) for _ in range(rng.randint(0, 4))}
            if source_frames > 1
            else set()
        )
        spans = cfr_spans(source_frames, source_fps, target_fps, cuts)
        keyframes = sorted({0} | {rng.randrange(source_frames) for _ in range(rng.randint(0, 8))})
        size = rng.randint(2, 64)
        chunks = plan_chunks(
            spans,
            source_frames,
            chunk_frames=size,
            keyframes=keyframes if rng.random() < 0.7 else None,
            cuts=sorted(cuts),
        )
        check_plan(chunks, spans, source_frames)
        got = owned(chunks)
        assert got == list(range(len(spans)))  # union is everything, disjoint, in order
        pairs = pairs_interpolated(chunks, spans)
        assert len(pairs) == len(set(pairs))
        assert all(h <= 1 for h in halos(chunks))


def test_variable_rate_gap_with_no_outputs_is_folded_forward() -> None:
    # Source frames 2..5 are read by no output (a burst of frames inside one output interval).
    spans = [SourceSpan(0, 1), SourceSpan(1, 2), SourceSpan(6, 7), SourceSpan(7, 8)]
    chunks = plan_chunks(spans, 9, chunk_frames=2)
    check_plan(chunks, spans, 9)
    assert owned(chunks) == [0, 1, 2, 3]
    assert all(c.output_frames > 0 for c in chunks)


def test_engine_timeline_with_repeats_and_a_cut() -> None:
    from reframe.engine.timeline import plan_timeline

    # 48 frames at 24 fps; frames 20..22 repeat frame 19; a new shot starts at frame 30.
    anchors = [i for i in range(48) if i not in (20, 21, 22)]
    timeline = plan_timeline([Fraction(i, 24) for i in range(48)], 60, anchors=anchors, cuts={30})
    spans = [SourceSpan(f.left, f.right) for f in timeline.frames]
    chunks = plan_timeline_chunks(timeline, chunk_frames=20, keyframes=[0, 21, 40])
    check_plan(chunks, spans, 48)
    assert starts(chunks, spans) == [0, 23]
    # The seam at keyframe 21 falls inside the repeats 20..22, which no output reads: chunk 1
    # starts reading at 23, and chunk 0 owns the pair (19, 23) that skips them.
    assert chunks[0].decode_stop == 24
    assert any(s == SourceSpan(19, 23) for s in spans[: chunks[0].out_stop])


class RecordingInterpolator:
    """Counts the synthesized frames of each forward pass; returns black frames."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def interpolate(self, img0, img1, timestep, *, pair_index=None):  # type: ignore[no-untyped-def]
        import torch

        self.calls.append(int(timestep.shape[0]))
        return torch.zeros((timestep.shape[0], *img0.shape[1:]))


def forward_passes(timeline, start: int, stop: int, batch_size: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """Which output indices shared each forward pass when rendering [start, stop)."""
    import numpy as np

    from reframe.engine.render_core import render_frames
    from reframe.video.decode import DecodedFrame

    outputs = timeline.frames[start:stop]
    span = timeline.source_span(start, stop)
    source = (DecodedFrame(i, i, Fraction(i), np.zeros((2, 2, 3), np.uint8)) for i in span)
    recorder = RecordingInterpolator()
    list(render_frames(source, outputs, recorder, batch_size=batch_size))
    synthesized = iter([o.index for o in outputs if o.synthesized])
    return [[next(synthesized) for _ in range(n)] for n in recorder.calls]


def test_chunks_on_batch_starts_batch_like_a_single_pass() -> None:
    from reframe.engine.timeline import plan_timeline

    rng = random.Random(11)
    for _ in range(60):
        frames = rng.randint(2, 90)
        repeats = {rng.randrange(1, frames) for _ in range(rng.randint(0, 5))}
        anchors = [i for i in range(frames) if i not in repeats]
        cuts = {a for a in anchors[1:] if rng.random() < 0.05}
        target = rng.choice([30, 48, 60, 120, 240])
        timeline = plan_timeline(
            [Fraction(i, 24) for i in range(frames)], target, anchors=anchors, cuts=cuts
        )
        batch = rng.choice([1, 2, 3, 8])
        chunks = plan_timeline_chunks(
            timeline, chunk_frames=rng.randint(2, 20), keyframes=[0], batch_size=batch
        )
        whole = forward_passes(timeline, 0, len(timeline), batch)
        pieces = [
            p for c in chunks for p in forward_passes(timeline, c.out_start, c.out_stop, batch)
        ]
        assert pieces == whole
