"""Memory of the interpolation on CPU: what the process peaks at, by picture size and by frames
per forward pass, with the time per frame measured side by side; and a real 720p render
actor's peak against what it declares to Ray.

    .venv/bin/python bench/memory.py             # engine sizes x batches, then the 720p actor
    .venv/bin/python bench/memory.py --no-actor  # engine only

Each engine case runs in a fresh process (peak RSS from getrusage is per process), does one
warm-up pass, then times `--repeats` passes of 4 synthesized frames split into forward passes
of `batch` frames. Writes bench/out/memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"
CASES = [(640, 360, (1, 2, 4, 8)), (1280, 720, (1, 2, 4, 8)), (1920, 1080, (1, 2))]
MIB = 1024 * 1024

_CHILD = """
import json, resource, sys, time, torch
from reframe.config import Settings
from reframe.engine.inference import Interpolator
from reframe.engine.weights import resolve_weights
w, h, batch, repeats, threads = map(int, sys.argv[1:6])
s = Settings()
interp = Interpolator(resolve_weights(s.model_dir, s.rife_weights), threads=threads,
                      max_batch=batch)
frames = 4
a, b = torch.rand(frames, 3, h, w), torch.rand(frames, 3, h, w)
t = torch.full((frames,), 0.5)
interp.interpolate(a, b, t)
start = time.perf_counter()
for _ in range(repeats):
    interp.interpolate(a, b, t)
per_frame = (time.perf_counter() - start) / (repeats * frames)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_bytes": peak, "s_per_frame": per_frame}))
"""


def engine_case(width: int, height: int, batch: int, repeats: int, threads: int) -> dict[str, Any]:
    argv = [str(v) for v in (width, height, batch, repeats, threads)]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def actor_720p(work: Path) -> dict[str, Any]:
    """A real render actor at 720p on a local Ray: its peak RSS and what it reserved."""
    import ray

    from reframe.config import Settings
    from reframe.options import RenderOptions
    from reframe.pipeline.actors import WorkerConfig
    from reframe.pipeline.ray_pipeline import run_render
    from reframe.storage import build_storage
    from tests.fixtures.media import make_clip

    clip = make_clip(work / "clip.mp4", frames=12, width=1280, height=720)
    settings = Settings(data_dir=work / "data")
    storage = build_storage(settings)
    storage.upload_file(clip, "bench/clip.mp4", "video/mp4")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        started = time.perf_counter()
        result = run_render(
            storage=storage,
            worker=WorkerConfig.from_settings(settings),
            input_key="bench/clip.mp4",
            output=work / "out.mp4",
            target_fps=Fraction(48),
            options=RenderOptions(preset="ultrafast", chunk_frames=12, actors=1),
        )
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {
        "frames": result.frames,
        "seconds": round(seconds, 1),
        "actor_peak_rss_gib": round(result.peak_actor_rss_bytes / 2**30, 2),
        "declared_gib": round(result.actor_memory_bytes / 2**30, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-actor", action="store_true")
    args = parser.parse_args()

    from reframe.engine.inference import cpu_peak_bytes, default_max_batch

    rows = []
    for width, height, batches in CASES:
        chosen = default_max_batch(width, height, "cpu")
        for batch in batches:
            measured = engine_case(width, height, batch, args.repeats, args.threads)
            row = {
                "size": f"{width}x{height}",
                "batch": batch,
                "default": batch == chosen,
                "peak_mib": round(measured["peak_bytes"] / MIB),
                "s_per_frame": round(measured["s_per_frame"], 3),
            }
            if batch == chosen:
                row["model_mib"] = round(cpu_peak_bytes(width, height) / MIB)
            rows.append(row)
            print(row, flush=True)
    result: dict[str, Any] = {"engine": rows}
    if not args.no_actor:
        with tempfile.TemporaryDirectory(prefix="reframe-mem-") as tmp:
            result["actor_720p"] = actor_720p(Path(tmp))
        print(result["actor_720p"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "memory.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
