"""The Ray Data render pipeline end to end, with the real weights, on a shared Ray runtime.

Each pipeline run costs ~15 s here (actor start-up: torch import and model load), so the runs
are module fixtures shared by the tests that inspect them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from reframe.errors import RenderError
from reframe.options import RenderOptions
from reframe.pipeline.plan import Chunk
from reframe.pipeline.ray_pipeline import ChunkResult, order_results
from tests.fixtures.media import make_clip

TARGET_FPS = Fraction(60)
# 36 frames with a keyframe every 12: the plan below makes 3 chunks on keyframe seams.
CLIP_FRAMES = 36
GOP = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
OPTIONS = RenderOptions(crf=0, preset="ultrafast", chunk_frames=12, actors=2)


def decode(path: Path) -> tuple[list[Fraction], list[np.ndarray]]:
    import av

    times, frames = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            times.append(Fraction(frame.pts) * frame.time_base)
            frames.append(frame.to_ndarray(format="rgb24"))
    return times, frames


@dataclass
class Run:
    output: Path
    progress: list[tuple[int, int]]
    plan: tuple[Chunk, ...]
    chunks: tuple[ChunkResult, ...]


def test_order_results_restores_plan_order_and_checks_counts() -> None:
    chunks = [Chunk(i, 10 * i, 10 * i + 11, 25 * i, 25 * i + 25) for i in range(3)]
    arrived = {i: ChunkResult(i, f"seg/{i}", 25, 1.0) for i in (2, 0, 1)}
    assert [r.index for r in order_results(chunks, arrived)] == [0, 1, 2]
    with pytest.raises(RenderError, match=r"chunks \[1\] produced no segment"):
        order_results(chunks, {i: arrived[i] for i in (0, 2)})
    with pytest.raises(RenderError, match="returned 24 frames, planned 25"):
        order_results(chunks, {**arrived, 1: ChunkResult(1, "seg/1", 24, 1.0)})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-pipeline")


@pytest.fixture(scope="module")
def source_clip(workspace: Path) -> Path:
    return make_clip(
        workspace / "source.mp4",
        frames=CLIP_FRAMES,
        width=96,
        height=64,
        audio=True,
        options=GOP,
    )


def _run(ray_runtime: ModuleType, workspace: Path, source: Path, *, watermark: bool) -> Run:
    from reframe.config import Settings
    from reframe.pipeline.actors import WorkerConfig
    from reframe.pipeline.ray_pipeline import run_render
    from reframe.storage import build_storage

    settings = Settings(data_dir=workspace / "data")
    storage = build_storage(settings)
    storage.upload_file(source, "inputs/source.mp4", "video/mp4")
    progress: list[tuple[int, int]] = []
    output = workspace / f"ray-{'wm' if watermark else 'clean'}.mp4"
    result = run_render(
        storage=storage,
        worker=WorkerConfig.from_settings(settings),
        input_key="inputs/source.mp4",
        output=output,
        target_fps=TARGET_FPS,
        options=OPTIONS,
        watermark=watermark,
        progress=lambda done, total, *_: progress.append((done, total)),
    )
    # Segments are temporary: nothing but the input is left in storage.
    left = sorted(
        p.relative_to(settings.resolved_storage_dir)
        for p in settings.resolved_storage_dir.rglob("*")
        if p.is_file()
    )
    assert left == [Path("inputs/source.mp4")]
    return Run(output, progress, result.plan, result.chunks)


@pytest.fixture(scope="module")
def clean_run(ray_runtime: ModuleType, workspace: Path, source_clip: Path) -> Run:
    return _run(ray_runtime, workspace, source_clip, watermark=False)


@pytest.fixture(scope="module")
def watermarked_run(ray_runtime: ModuleType, workspace: Path, source_clip: Path) -> Path:
    """The same render through `reframe render --ray --watermark` (the CLI path)."""
    from reframe.cli import main

    output = workspace / "ray-wm.mp4"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REFRAME_DATA_DIR", str(workspace / "cli-data"))
        code = main(
            [
                "render",
                str(source_clip),
                "-o",
                str(output),
                "--target-fps",
                "60",
                "--crf",
                "0",
                "--preset",
                "ultrafast",
                "--watermark",
                "--ray",
                "--chunk-frames",
                "12",
                "--quiet",
            ]
        )
    assert code == 0
    return output


@pytest.fixture(scope="module")
def single_process(workspace: Path, source_clip: Path) -> Path:
    """The same render through plain `reframe render` (no Ray)."""
    from reframe.cli import main

    output = workspace / "single.mp4"
    code = main(
        [
            "render",
            str(source_clip),
            "-o",
            str(output),
            "--target-fps",
            "60",
            "--crf",
            "0",
            "--preset",
            "ultrafast",
            "--quiet",
        ]
    )
    assert code == 0
    return output


SLOW_HEAD = ["--seconds", "0.75", "--playback-fps", "30", "--crf", "0", "--preset", "ultrafast"]


@pytest.fixture(scope="module")
def slow_head_runs(
    workspace: Path, source_clip: Path, ray_runtime: ModuleType
) -> tuple[Path, Path]:
    """The first 0.75 s in slow motion (60 -> 30 fps), through `reframe render --ray` and
    plain `reframe render`: the output flags the API's jobs have, on both paths."""
    from reframe.cli import main

    ray_out, local_out = workspace / "slow-head-ray.mov", workspace / "slow-head.mov"
    base = ["render", str(source_clip), "--target-fps", "60", "--quiet", *SLOW_HEAD]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REFRAME_DATA_DIR", str(workspace / "cli-data"))
        assert main([*base, "-o", str(ray_out), "--ray", "--chunk-frames", "12"]) == 0
    assert main([*base, "-o", str(local_out)]) == 0
    return ray_out, local_out


@pytest.mark.ray
@pytest.mark.weights
def test_slow_motion_of_the_first_seconds_is_the_same_on_ray_and_one_process(
    slow_head_runs: tuple[Path, Path],
) -> None:
    import av

    ray_out, local_out = slow_head_runs
    ray_times, ray_frames = decode(ray_out)
    ref_times, ref_frames = decode(local_out)
    assert len(ray_frames) == len(ref_frames) == 45  # round(0.75 x 60), played at 30 fps
    assert ray_times == ref_times == [Fraction(k, 30) for k in range(45)]
    for k, (a, b) in enumerate(zip(ray_frames, ref_frames, strict=True)):
        assert np.array_equal(a, b), f"output frame {k} differs"
    for path in slow_head_runs:
        with av.open(str(path)) as container:
            assert [s.type for s in container.streams] == ["video"]  # slow motion has no sound


@pytest.mark.ray
@pytest.mark.weights
def test_plan_has_at_least_three_keyframe_chunks(clean_run: Run) -> None:
    assert len(clean_run.plan) >= 3
    assert [c.decode_start for c in clean_run.plan] == [0, 12, 24]
    assert [r.index for r in clean_run.chunks] == [0, 1, 2]


@pytest.mark.ray
@pytest.mark.weights
def test_stitched_output_equals_single_process_render(clean_run: Run, single_process: Path) -> None:
    ray_times, ray_frames = decode(clean_run.output)
    ref_times, ref_frames = decode(single_process)
    assert len(ray_frames) == len(ref_frames) == 90  # 1.5 s at 60 fps
    assert ray_times == ref_times
    for k, (a, b) in enumerate(zip(ray_frames, ref_frames, strict=True)):
        assert np.array_equal(a, b), f"output frame {k} differs"


@pytest.mark.ray
@pytest.mark.weights
def test_progress_only_goes_up_and_ends_complete(clean_run: Run) -> None:
    # Reports come from the actors as frames are written (reframe.pipeline.progress) and as
    # chunks finish; how many depends on timing, but never a step back and never a repeat.
    done = [d for d, _ in clean_run.progress]
    assert done
    assert done == sorted(set(done))
    assert clean_run.progress[-1] == (90, 90)
    assert all(total == 90 for _, total in clean_run.progress)


@pytest.mark.ray
@pytest.mark.weights
def test_audio_and_colour_tags_survive_stitching(clean_run: Run, single_process: Path) -> None:
    import av

    with av.open(str(clean_run.output)) as ray_out, av.open(str(single_process)) as ref:
        assert [s.type for s in ray_out.streams] == ["video", "audio"]
        a, b = ray_out.streams.audio[0], ref.streams.audio[0]
        assert (a.codec_context.name, a.frames) == (b.codec_context.name, b.frames)
        va, vb = ray_out.streams.video[0].codec_context, ref.streams.video[0].codec_context
        assert (va.color_primaries, va.color_trc, va.colorspace, va.color_range) == (
            vb.color_primaries,
            vb.color_trc,
            vb.colorspace,
            vb.color_range,
        )


@pytest.mark.ray
@pytest.mark.weights
def test_watermark_is_in_the_corner_of_every_frame(clean_run: Run, watermarked_run: Path) -> None:
    from reframe.video.encode import watermark_box

    _, clean = decode(clean_run.output)
    _, marked = decode(watermarked_run)
    x0, y0, x1, y1 = watermark_box(96, 64)
    assert x1 - x0 >= 20  # visible at this size
    outside = np.ones((64, 96), dtype=bool)
    outside[y0:y1, x0:x1] = False
    for k, (a, b) in enumerate(zip(clean, marked, strict=True)):
        corner_a = a[y0:y1, x0:x1].astype(np.int16)
        corner_b = b[y0:y1, x0:x1].astype(np.int16)
        # White text: some corner pixels become much brighter, in every frame of every chunk.
        assert (corner_b - corner_a).max() > 60, f"frame {k} has no watermark"
        assert np.array_equal(a[outside], b[outside]), f"frame {k} changed outside the mark"
