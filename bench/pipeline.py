"""Ray pipeline cost and scaling, measured in one run on one clip.

1. At 720p: the single-process render (`reframe render`'s `render_file`, all cores) against the
   Ray pipeline (plan -> actor pool -> segments -> stitch) with the same cores split between
   actors. Reported: wall time of each, and the pipeline's overhead both end to end and without
   actor start-up (model load), which a long clip amortises.
2. At a small size: the pipeline with 1 actor and with 2 actors (1 torch thread each).

    .venv/bin/python bench/pipeline.py            # ~5 min on 2 cores
    .venv/bin/python bench/pipeline.py --quick    # smaller clips, for a smoke run

Writes bench/out/pipeline.json and bench/out/pipeline.md (and a PNG chart if matplotlib is
installed). Numbers depend on what else the machine runs; the table records the core count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reframe.engine.inference import Precision

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def make_source(path: Path, frames: int, width: int, height: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.media import make_clip

    return make_clip(
        path,
        frames=frames,
        width=width,
        height=height,
        audio=True,
        options={"x264-params": "keyint=12:min-keyint=12:scenecut=0"},
    )


def bare_engine(source: Path, output: Path, fps: Fraction, threads: int) -> dict[str, Any]:
    from reframe.config import Settings
    from reframe.engine.inference import Interpolator
    from reframe.engine.render_core import render_file
    from reframe.engine.weights import resolve_weights
    from reframe.video.encode import EncodeOptions

    started = time.perf_counter()
    settings = Settings()
    weights = resolve_weights(settings.model_dir, settings.rife_weights)
    interpolator = Interpolator(weights, threads=threads)
    loaded = time.perf_counter()
    # Warm up (first-call costs of the analysis and of oneDNN at this size) on a 3-frame clip,
    # so the timed render is what a long clip sees; the actors pay theirs in their start-up.
    info_w, info_h = _size(source)
    warm = make_source(output.with_name("warm.mp4"), 3, info_w, info_h)
    render_file(warm, output.with_name("warm-out.mp4"), fps, interpolator)
    warmed = time.perf_counter()
    report = render_file(source, output, fps, interpolator, encode=EncodeOptions(preset="fast"))
    done = time.perf_counter()
    return {
        "frames": report.frames,
        "synthesized": report.synthesized,
        "load_s": loaded - started,
        "warmup_s": warmed - loaded,
        "render_s": done - warmed,
        "wall_s": done - warmed + (loaded - started),
    }


def _size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return int(ctx.width), int(ctx.height)


def pipeline(
    source: Path,
    output: Path,
    fps: Fraction,
    *,
    actors: int,
    chunk_frames: int,
    work: Path,
    threads: int = 1,
    preset: str = "fast",
    num_gpus: float = 0.0,
    device: str | None = None,
    precision: Precision = "fp32",
    weights: Path | None = None,
) -> dict[str, Any]:
    """One render through the Ray pipeline on the connected Ray; `num_gpus` per actor."""
    from reframe.config import Settings
    from reframe.options import RenderOptions
    from reframe.pipeline.actors import WorkerConfig
    from reframe.pipeline.ray_pipeline import run_render
    from reframe.storage import build_storage

    settings = Settings(data_dir=work / f"data-{actors}", rife_weights=weights)
    storage = build_storage(settings)
    storage.upload_file(source, "bench/source.mp4", "video/mp4")
    started = time.perf_counter()
    result = run_render(
        storage=storage,
        worker=WorkerConfig.from_settings(settings),
        input_key="bench/source.mp4",
        output=output,
        target_fps=fps,
        options=RenderOptions(
            preset=preset,
            chunk_frames=chunk_frames,
            actors=actors,
            num_cpus=float(threads) if threads > 1 else None,
            threads=threads,
            num_gpus=num_gpus,
            device=device,
            precision=precision,
        ),
    )
    wall = time.perf_counter() - started
    chunk_s = [c.seconds for c in result.chunks]
    return {
        "actors": actors,
        "threads": threads,
        "chunks": len(result.plan),
        "frames": result.frames,
        "wall_s": wall,
        "plan_s": result.plan_seconds,
        "startup_s": result.startup_seconds,
        "stitch_s": result.stitch_seconds,
        # Rendering proper: from the first chunk starting to the stitched file.
        "work_s": wall - result.plan_seconds - result.startup_seconds,
        "chunk_s_sum": sum(chunk_s),
        "chunk_s_max": max(chunk_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small clips, for a smoke run")
    args = parser.parse_args()

    import ray

    from reframe.sched import available_cpus

    cores = available_cpus()
    big = (320, 180, 16) if args.quick else (1280, 720, 48)
    small = (128, 72, 24) if args.quick else (256, 144, 72)
    fps = Fraction(48)
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "cores": cores,
        "target_fps": float(fps),
        "load": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="reframe-bench-") as tmp:
        work = Path(tmp)
        w, h, n = big
        src = make_source(work / "big.mp4", n, w, h)
        print(f"[1/5] bare engine at {w}x{h}, {n} frames, {cores} threads", flush=True)
        engine = bare_engine(src, work / "engine.mp4", fps, threads=cores)
        print(f"      {engine}", flush=True)

        ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False)
        try:
            # One actor with every core is the like-for-like comparison with the bare engine
            # (same threads, same batches); N single-thread actors is what a multi-node
            # cluster does, and on one machine it also pays for N model copies.
            print(f"[2/5] pipeline at {w}x{h}, 1 actor x {cores} threads", flush=True)
            piped = pipeline(
                src, work / "ray.mp4", fps, actors=1, chunk_frames=16, work=work, threads=cores
            )
            print(f"      {piped}", flush=True)
            print(f"[3/5] pipeline at {w}x{h}, {cores} actors x 1 thread", flush=True)
            spread = pipeline(src, work / "ray-n.mp4", fps, actors=cores, chunk_frames=8, work=work)
            print(f"      {spread}", flush=True)
            sw, sh, sn = small
            small_src = make_source(work / "small.mp4", sn, sw, sh)
            scaling = []
            for actors in (1, 2):
                print(f"[{3 + actors}/5] pipeline at {sw}x{sh}, {actors} actor(s)", flush=True)
                scaling.append(
                    pipeline(
                        small_src,
                        work / f"small-{actors}.mp4",
                        fps,
                        actors=actors,
                        chunk_frames=12,
                        work=work,
                    )
                )
                print(f"      {scaling[-1]}", flush=True)
        finally:
            ray.shutdown()

    results["720p"] = {
        "size": f"{big[0]}x{big[1]}",
        "source_frames": big[2],
        "engine": engine,
        "pipeline": piped,
        "pipeline_spread": spread,
        "overhead_end_to_end": piped["wall_s"] / engine["wall_s"] - 1,
        "overhead_spread_end_to_end": spread["wall_s"] / engine["wall_s"] - 1,
        # Actor start-up (process spawn, torch import, model load) is paid once per render and
        # vanishes into a long clip; everything else (planning, chunking, segment encode and
        # upload, stitching) is compared here.
        "overhead_without_startup": (piped["wall_s"] - piped["startup_s"]) / engine["wall_s"] - 1,
    }
    results["scaling"] = {
        "size": f"{small[0]}x{small[1]}",
        "source_frames": small[2],
        "runs": scaling,
        "speedup_2_vs_1": scaling[0]["wall_s"] / scaling[1]["wall_s"],
        "speedup_2_vs_1_work": scaling[0]["work_s"] / scaling[1]["work_s"],
    }
    (OUT / "pipeline.json").write_text(json.dumps(results, indent=2))
    table = render_table(results)
    (OUT / "pipeline.md").write_text(table)
    print(table)
    chart(results)
    return 0


def render_table(r: dict[str, Any]) -> str:
    big, sc = r["720p"], r["scaling"]
    e, p = big["engine"], big["pipeline"]
    lines = [
        f"# Ray pipeline benchmark ({r['cores']} cores, load average {r['load']:.1f} before "
        f"the run, target {r['target_fps']:g} fps)",
        "",
        f"## {big['size']}, {big['source_frames']} source frames -> {e['frames']} output frames",
        "",
        "| path | wall s | output frames/s | notes |",
        "|---|---|---|---|",
        f"| bare engine (`render_file`, {r['cores']} threads) | {e['wall_s']:.1f} | "
        f"{e['frames'] / e['wall_s']:.2f} | model load {e['load_s']:.1f} s (warm-up "
        f"{e['warmup_s']:.1f} s not counted) |",
    ]
    for run in (p, big["pipeline_spread"]):
        lines.append(
            f"| Ray pipeline ({run['actors']} actor(s) x {run['threads']} thread(s), "
            f"{run['chunks']} chunks) | {run['wall_s']:.1f} | "
            f"{run['frames'] / run['wall_s']:.2f} | plan {run['plan_s']:.1f} s, actor start-up "
            f"{run['startup_s']:.1f} s, stitch {run['stitch_s']:.2f} s |"
        )
    lines += [
        "",
        f"Overhead of 1 actor x {p['threads']} threads end to end: "
        f"{100 * big['overhead_end_to_end']:+.1f} %; without actor start-up: "
        f"{100 * big['overhead_without_startup']:+.1f} %. "
        f"{big['pipeline_spread']['actors']} single-thread actors end to end: "
        f"{100 * big['overhead_spread_end_to_end']:+.1f} %.",
    ]
    lines += [
        "",
        f"## Scaling at {sc['size']}, {sc['source_frames']} source frames",
        "",
        "| actors | wall s | start-up s | rendering s | chunks | sum of chunk s |",
        "|---|---|---|---|---|---|",
    ]
    for run in sc["runs"]:
        lines.append(
            f"| {run['actors']} | {run['wall_s']:.1f} | {run['startup_s']:.1f} | "
            f"{run['work_s']:.1f} | {run['chunks']} | {run['chunk_s_sum']:.1f} |"
        )
    lines += [
        "",
        f"Speed-up 2 vs 1 actor: {sc['speedup_2_vs_1']:.2f}x wall, "
        f"{sc['speedup_2_vs_1_work']:.2f}x rendering only.",
        "",
    ]
    return "\n".join(lines)


def chart(r: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    big, sc = r["720p"], r["scaling"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(["engine", "ray pipeline"], [big["engine"]["wall_s"], big["pipeline"]["wall_s"]])
    axes[0].set_title(f"{big['size']}: wall seconds")
    axes[1].bar([str(run["actors"]) for run in sc["runs"]], [run["wall_s"] for run in sc["runs"]])
    axes[1].set_title(f"{sc['size']}: wall seconds by actors")
    fig.tight_layout()
    fig.savefig(OUT / "pipeline.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
