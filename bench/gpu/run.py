"""GPU throughput of RIFE 4.26 at 720p and 1080p: frames synthesized per second.

Finishes in well under 5 minutes on any CUDA card: for each size and precision it warms up,
then times a fixed number of batched forwards with CUDA events. Writes bench/out/gpu.json.

    .venv/bin/python bench/gpu/run.py                 # pulls the weights if needed
    REFRAME_RIFE_WEIGHTS=/path/flownet.pkl .venv/bin/python bench/gpu/run.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reframe.config import Settings
from reframe.engine.inference import Interpolator
from reframe.engine.weights import resolve_weights

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def measure(interp: Interpolator, width: int, height: int, batch: int, seconds: float) -> float:
    img0 = torch.rand(batch, 3, height, width, device=interp.device)
    img1 = torch.rand(batch, 3, height, width, device=interp.device)
    t = torch.full((batch,), 0.5, device=interp.device)
    for _ in range(3):
        interp.interpolate(img0, img1, t)
    torch.cuda.synchronize()
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        interp.interpolate(img0, img1, t)
        frames += batch
    torch.cuda.synchronize()
    return frames / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RIFE 4.26 fps on a CUDA GPU")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per case")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "out")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    settings = Settings()
    weights = resolve_weights(
        settings.model_dir, settings.rife_weights, log=lambda m: print(m, file=sys.stderr)
    )
    results = []
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"{'size':6} {'precision':9} {'batch':>5} {'fps':>8}")
    for precision in args.precisions.split(","):
        interp = Interpolator(
            weights,
            device="cuda",
            precision=precision,
            max_batch=args.batch,  # type: ignore[arg-type]
        )
        for name, (w, h) in SIZES.items():
            fps = measure(interp, w, h, args.batch, args.seconds)
            results.append({"size": name, "precision": precision, "batch": args.batch, "fps": fps})
            print(f"{name:6} {precision:9} {args.batch:5d} {fps:8.1f}", flush=True)
        del interp
        torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "results": results,
    }
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
