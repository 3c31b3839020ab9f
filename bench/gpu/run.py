"""RIFE 4.26 on one GPU: engine and pipeline throughput, fast paths, their PSNR, peak VRAM.

One prepared run (`bench/gpu/run.sh`, under 5 minutes on a lent GPU) that prints one JSON
document and writes it to `<out>/gpu.json` after every stage, so a run cut short still leaves
what it measured. Stages, in order of value:

1. engine: `reframe.engine.inference.Interpolator` alone at 720p / 1080p / 2160p, 2x (one
   synthesized frame per pair, t = 0.5), fp32, fp16 and bf16 (flows, masks and warps stay fp32
   in every mode, as the engine does), at the render core's batch for that size and at batch 8.
   Frames synthesized per second, eager. Every case's output is rounded to 8 bits (what the
   encoder gets) and compared per frame with strict fp32 (TF32 off): min and mean PSNR.
2. vram: `torch.cuda.max_memory_allocated` for one forward at batch 1/2/4/8 per size and
   precision, counted as an actor would see it (its own weights + inputs + activations).
3. pipeline: the single-GPU render path, `reframe.engine.render_core.render_file` (decode ->
   scene analysis -> interpolate -> encode with the product's default encoder settings) on a
   generated 2 s, 24 fps clip rendered at 48 fps; fp32 and the fastest reduced precision.
4. cudagraph: the engine cases replayed from a captured CUDA graph.
5. compile: `torch.compile` (default mode, then "reduce-overhead", which adds CUDA graphs) in a
   child process killed at its time budget, so a slow compile cannot overrun the run.
6. ray: the Ray pipeline with one actor (one GPU on CUDA) in a child process with its own time
   budget, when Ray is importable; otherwise the reason.

For each (size, precision, batch) `best` names the fastest mode that finished and its speed-up
over eager. `--device cpu --quick` runs every stage at a tiny size in seconds (CUDA-only modes
report why they were skipped), which is how the tests keep this script working between GPUs.

    bash bench/gpu/run.sh                                  # on a CUDA machine
    .venv/bin/python bench/gpu/run.py --device cpu --quick --weights random --ray off
    .venv/bin/python bench/gpu/run.py --update-manifest bench/out/gpu.json  # VRAM -> models/
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from reframe.engine.inference import Interpolator, default_scale  # noqa: E402
from reframe.engine.render_core import default_batch_size  # noqa: E402

SCHEMA = 1
MANIFEST = ROOT / "models" / "rife-4.26.json"
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "2160p": (3840, 2160)}
QUICK_DIVISOR = 32  # --quick: each size divided by this (rounded to even), same scale and cases
PRECISIONS = ("fp32", "fp16", "bf16")
VRAM_BATCHES = (1, 2, 4, 8)
MODES = ("eager", "cudagraph", "compile", "compile-cudagraph")
PSNR_TARGET_DB = 45.0
TARGET_FPS = 48  # pipeline: the generated 24 fps clip rendered at twice its rate


@dataclass(frozen=True)
class Size:
    name: str  # the full-size name ("720p"), also in --quick
    width: int
    height: int
    scale: float  # the network scale of the full size, kept at the tiny size

    @property
    def key(self) -> str:
        return f"{self.width}x{self.height}"


def sizes_for(names: list[str], quick: bool) -> list[Size]:
    out = []
    for name in names:
        w, h = SIZES[name]
        scale = default_scale(w, h)
        if quick:
            w = max(2, round(w / QUICK_DIVISOR / 2) * 2)
            h = max(2, round(h / QUICK_DIVISOR / 2) * 2)
        out.append(Size(name, w, h, scale))
    return out


def render_batch(size: Size) -> int:
    """The render core's batch for the full size (what a render would use)."""
    full_w, full_h = SIZES[size.name]
    return default_batch_size(full_w, full_h)


# ---------------------------------------------------------------------------------- helpers


class Budget:
    """Wall-clock deadline for the whole run; stages ask before starting more work."""

    def __init__(self, seconds: float) -> None:
        self.started = time.perf_counter()
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()


def skipped(reason: str, **fields: Any) -> dict[str, Any]:
    return {**fields, "status": "skipped", "reason": reason}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def scene_pairs(batch: int, size: Size, device: torch.device, seed: int = 0) -> torch.Tensor:
    """(2, batch, 3, H, W) float pairs in [0, 1]: a multi-scale texture and a block, moved by a
    different (dx, dy) in each pair, so the flow estimator has real work and every frame of a
    batch differs. Made on the CPU from a seed, so every process gets the same pixels."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size.height, size.width
    margin = 24
    layers = []
    for cells in (4, 16, 64):
        coarse = torch.rand(1, 3, cells, max(1, cells * w // h), generator=gen)
        layers.append(
            torch.nn.functional.interpolate(
                coarse, size=(h + 2 * margin, w + 2 * margin), mode="bicubic", align_corners=False
            )
        )
    texture = (layers[0] * 0.5 + layers[1] * 0.3 + layers[2] * 0.2).clamp(0, 1)[0]
    pairs = torch.empty(2, batch, 3, h, w)
    block = torch.rand(3, max(1, h // 5), max(1, w // 5), generator=gen)
    for k in range(batch):
        dx, dy = (k % 5) * 3 - 6, (k % 3) * 2 - 2  # up to 6 px of motion
        for j, (ox, oy) in enumerate(((0, 0), (dx, dy))):
            frame = texture[:, margin + oy : margin + oy + h, margin + ox : margin + ox + w].clone()
            bx = (w // 3 + 4 * k + (2 * dx if j else 0)) % max(1, w - block.shape[2])
            by = (h - block.shape[1]) // 2
            frame[:, by : by + block.shape[1], bx : bx + block.shape[2]] = block
            pairs[j, k] = frame
    return pairs.to(device)


def to_uint8(batch: torch.Tensor) -> np.ndarray:
    """What the render core hands the encoder: rounded 8-bit RGB, (B, H, W, 3)."""
    rgb = batch.float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return np.asarray(rgb.permute(0, 2, 3, 1).cpu().numpy())


def psnr_against(reference: np.ndarray, frames: np.ndarray) -> dict[str, Any]:
    """Per-frame PSNR of `frames` against `reference` (both (B, H, W, 3) uint8): min and mean
    over frames; bit-identical frames have no finite PSNR and are counted separately."""
    diff = reference.astype(np.float64) - frames.astype(np.float64)
    mse = (diff**2).reshape(len(frames), -1).mean(axis=1)
    finite = [10 * math.log10(255.0**2 / m) for m in mse if m > 0]
    return {
        "psnr_min_db": round(min(finite), 2) if finite else None,
        "psnr_mean_db": round(sum(finite) / len(finite), 2) if finite else None,
        "identical_frames": int((mse == 0).sum()),
        "frames_compared": len(frames),
        "psnr_ok": not finite or min(finite) >= PSNR_TARGET_DB,
    }


def strict_fp32(enabled: bool) -> None:
    """TF32 off (True) or back to PyTorch's defaults (False): cuDNN convolutions may use TF32
    by default on Ampere and later, so "fp32" on a GPU is not strict fp32 unless asked."""
    torch.backends.cudnn.allow_tf32 = not enabled
    torch.backends.cuda.matmul.allow_tf32 = False


def timed(
    step: Callable[[], Any], device: torch.device, seconds: float, warmup: int
) -> tuple[float, int]:
    """Seconds per call of `step` (after `warmup` calls) over about `seconds`, and the calls."""
    for _ in range(warmup):
        step()
    sync(device)
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < seconds:
        step()
        calls += 1
    sync(device)
    return (time.perf_counter() - started) / calls, calls


def build_interpolator(
    weights: str, device: str, precision: str, scale: float, max_batch: int
) -> Interpolator:
    common: dict[str, Any] = {
        "device": device,
        "precision": precision,
        "scale": scale,
        "max_batch": max_batch,
    }
    if weights == "random":
        from reframe.engine.ifnet import IFNet

        torch.manual_seed(0)
        return Interpolator.from_network(IFNet(), **common)
    return Interpolator(Path(weights), **common)


def precision_problem(ctx: Context, precision: str, size: Size) -> str | None:
    """Why `precision` cannot run here (the engine's own refusal), or None."""
    from reframe.errors import InvalidInput

    if ctx.device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16"
    try:
        ctx.interpolator(precision, size)
    except InvalidInput as exc:
        return str(exc)
    return None


def case_fields(size: Size, precision: str, batch: int, mode: str) -> dict[str, Any]:
    return {
        "size": size.name,
        "width": size.width,
        "height": size.height,
        "scale": size.scale,
        "precision": precision,
        "batch": batch,
        "mode": mode,
    }


def forward(
    interp: Interpolator, pairs: torch.Tensor, ts: torch.Tensor, *, copy: bool = False
) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        out = interp.interpolate(pairs[0], pairs[1], ts)
        return out.clone() if copy else out

    return run


def measure_case(
    interp: Interpolator,
    size: Size,
    batch: int,
    run: Callable[[], torch.Tensor],
    reference: np.ndarray,
    seconds: float,
    warmup: int,
) -> dict[str, Any]:
    out = run()
    quality = psnr_against(reference, to_uint8(out))
    per_call, calls = timed(run, interp.device, seconds, warmup)
    fps = batch / per_call
    return {
        "status": "ok",
        "fps": round(fps, 2),
        "output_fps_2x": round(2 * fps, 2),  # a 2x render copies one frame per synthesized one
        "ms_per_batch": round(1000 * per_call, 3),
        "calls": calls,
        **quality,
    }


# ---------------------------------------------------------------------------------- stages


def engine_stage(ctx: Context) -> None:
    """Eager fps and PSNR for every case; also computes the strict-fp32 references."""
    for size in ctx.sizes:
        for batch in ctx.batches_for(size):
            pairs = scene_pairs(batch, size, ctx.device)
            ts = torch.full((batch,), 0.5, device=ctx.device)
            ref_interp = ctx.interpolator("fp32", size)
            if ctx.device.type == "cuda":
                strict_fp32(True)
            ref = to_uint8(ref_interp.interpolate(pairs[0], pairs[1], ts))
            if ctx.device.type == "cuda":
                strict_fp32(False)
            ctx.save_reference(size, batch, ref)
            for precision in ctx.precisions:
                fields = case_fields(size, precision, batch, "eager")
                problem = precision_problem(ctx, precision, size)
                if problem:
                    ctx.add_engine(skipped(problem, **fields))
                    continue
                if ctx.budget.left() < ctx.reserve:
                    ctx.add_engine(skipped("time budget", **fields))
                    continue
                interp = ctx.interpolator(precision, size)

                run = forward(interp, pairs, ts)
                try:
                    result = measure_case(interp, size, batch, run, ref, ctx.seconds, ctx.warmup)
                except torch.OutOfMemoryError:
                    result = {"status": "failed", "reason": "out of memory"}
                ctx.add_engine({**fields, **result})
            del pairs
            ctx.release()
    ctx.write()


def vram_stage(ctx: Context) -> None:
    """Peak allocator memory of one forward, as an actor holding one model would see it.

    cuDNN autotuning is off here, as in the render actors: its trial runs allocate workspaces
    of their own that would inflate the peak."""
    autotune = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        _vram_table(ctx)
    finally:
        torch.backends.cudnn.benchmark = autotune
    ctx.write()


def _vram_table(ctx: Context) -> None:
    table: dict[str, Any] = {}
    for size in ctx.sizes:
        table[size.key] = {}
        for precision in ctx.precisions:
            row: dict[str, int | None] = {str(b): None for b in VRAM_BATCHES}
            table[size.key][precision] = row
            if ctx.device.type != "cuda" or precision_problem(ctx, precision, size):
                continue
            interp = ctx.interpolator(precision, size)
            weight_bytes = sum(p.numel() * p.element_size() for p in interp.net.parameters())
            for batch in VRAM_BATCHES:
                if ctx.budget.left() < ctx.reserve:
                    break
                ctx.release()
                torch.cuda.reset_peak_memory_stats(ctx.device)
                base = torch.cuda.memory_allocated(ctx.device)
                try:
                    pairs = scene_pairs(batch, size, ctx.device)
                    ts = torch.full((batch,), 0.5, device=ctx.device)
                    interp.interpolate(pairs[0], pairs[1], ts)
                    sync(ctx.device)
                    peak = torch.cuda.max_memory_allocated(ctx.device) - base + weight_bytes
                    row[str(batch)] = math.ceil(peak / 2**20)
                    del pairs, ts
                except torch.OutOfMemoryError:
                    break
    ctx.report["vram"] = {
        "unit": "MiB",
        "what": "torch.cuda.max_memory_allocated during one 2x forward, minus what the process "
        "held before, plus the model's own weights: one actor's allocator peak (add the CUDA "
        "context, about 0.5 GiB, and allocator slack to size a request)",
        "peak_allocated_mib": table,
        "measured": ctx.device.type == "cuda",
    }


def cudagraph_stage(ctx: Context) -> None:
    for size in ctx.sizes:
        for batch in ctx.batches_for(size):
            for precision in ctx.precisions:
                fields = case_fields(size, precision, batch, "cudagraph")
                problem = precision_problem(ctx, precision, size)
                if ctx.device.type != "cuda":
                    ctx.add_engine(skipped("CUDA graphs need a CUDA device", **fields))
                elif problem:
                    ctx.add_engine(skipped(problem, **fields))
                elif ctx.budget.left() < ctx.reserve:
                    ctx.add_engine(skipped("time budget", **fields))
                else:
                    ctx.add_engine({**fields, **graphed_case(ctx, size, batch, precision)})
            ctx.release()
    ctx.write()


def graphed_case(ctx: Context, size: Size, batch: int, precision: str) -> dict[str, Any]:
    interp = ctx.interpolator(precision, size)
    pairs = scene_pairs(batch, size, ctx.device)
    ts = torch.full((batch,), 0.5, device=ctx.device)
    started = time.perf_counter()
    try:
        # Warm up on a side stream (cuDNN picks its algorithms here), then capture one call;
        # replays reuse the captured kernels and the static input and output buffers.
        side = torch.cuda.Stream(ctx.device)
        side.wait_stream(torch.cuda.current_stream(ctx.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                interp.interpolate(pairs[0], pairs[1], ts)
        torch.cuda.current_stream(ctx.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = interp.interpolate(pairs[0], pairs[1], ts)
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        return {"status": "failed", "reason": f"capture failed: {str(exc).splitlines()[0]}"}
    setup = time.perf_counter() - started

    def replay() -> torch.Tensor:
        graph.replay()
        return static_out

    result = measure_case(
        interp, size, batch, replay, ctx.reference(size, batch), ctx.seconds, ctx.warmup
    )
    return {**result, "setup_s": round(setup, 2)}


def pipeline_stage(ctx: Context) -> None:
    from reframe.engine.render_core import plan_render, render_file

    results = ctx.report["pipeline"]
    try:
        import av  # noqa: F401  (the pipeline decodes and encodes with PyAV)

        from bench.clips import write_clip
    except ImportError as exc:
        results.append(skipped(f"cannot import the video stack: {exc}"))
        ctx.write()
        return
    work = Path(ctx.tmp) / "pipeline"
    work.mkdir(exist_ok=True)
    for size in ctx.sizes:
        precisions = ["fp32", *([p] if (p := ctx.fastest_reduced(size)) else [])]
        source = None
        for precision in precisions:
            fields: dict[str, Any] = {"size": size.name, "precision": precision}
            fields |= {"width": size.width, "height": size.height}
            if ctx.budget.left() < ctx.reserve + ctx.pipeline_estimate(size):
                results.append(skipped("time budget", **fields))
                continue
            if source is None:
                source = write_clip(
                    work / f"{size.key}.mp4",
                    size.width,
                    size.height,
                    ctx.clip_frames,
                    options={"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"},
                )
            interp = ctx.interpolator(precision, size)
            started = time.perf_counter()
            plan = plan_render(source, TARGET_FPS)
            planned = time.perf_counter()
            report = render_file(source, work / "out.mp4", TARGET_FPS, interp, plan=plan)
            done = time.perf_counter()
            render_s = done - planned
            results.append(
                {
                    **fields,
                    "status": "ok",
                    "source_frames": report.source_frames,
                    "output_frames": report.frames,
                    "synthesized": report.synthesized,
                    "plan_s": round(planned - started, 3),
                    "render_s": round(render_s, 3),
                    "output_fps": round(report.frames / render_s, 2),
                    "output_fps_with_plan": round(report.frames / (done - started), 2),
                    "encoder": "h264 crf 18 preset medium (the product's default)",
                }
            )
            ctx.write()
        ctx.release()
    ctx.write()


def compile_stage(ctx: Context) -> None:
    """torch.compile cases in a child process that is killed at the stage's budget."""
    cases = []
    for mode in ("compile", "compile-cudagraph"):
        for size in ctx.compile_order():
            precision = ctx.fastest_reduced(size) or "fp32"
            batch = ctx.primary_batch(size)
            if mode == "compile-cudagraph" and ctx.device.type != "cuda":
                ctx.add_engine(
                    skipped(
                        "CUDA graphs need a CUDA device",
                        **case_fields(size, precision, batch, mode),
                    )
                )
                continue
            cases.append((size, precision, batch, mode))
    ctx.release()  # the child needs the GPU memory this process cached
    budget = min(ctx.compile_budget, ctx.budget.left() - ctx.reserve)
    if budget <= 0 or not cases:
        for size, precision, batch, mode in cases:
            ctx.add_engine(
                skipped("no time left for compiling", **case_fields(size, precision, batch, mode))
            )
        ctx.write()
        return
    job = {
        "weights": ctx.weights,
        "device": str(ctx.device),
        "seconds": ctx.seconds,
        "warmup": ctx.warmup,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cases": [
            {
                **case_fields(size, precision, batch, mode),
                "reference": str(ctx.reference_path(size, batch)),
            }
            for size, precision, batch, mode in cases
        ],
    }
    finished, note = child("compile", job, budget)
    for size, precision, batch, mode in cases:
        fields = case_fields(size, precision, batch, mode)
        got = next(
            (r for r in finished if (r["size"], r["mode"], r["batch"]) == (size.name, mode, batch)),
            None,
        )
        ctx.add_engine(got if got is not None else skipped(note, **fields))
    ctx.report["compile_budget_s"] = round(budget, 1)
    ctx.write()


def ray_stage(ctx: Context) -> None:
    if ctx.ray == "off":
        ctx.report["ray"] = skipped("--ray off")
    elif ctx.weights == "random":
        ctx.report["ray"] = skipped(
            "the Ray actors load the real weights; run without --weights random"
        )
    else:
        try:
            import ray  # noqa: F401

            from reframe.config import Settings  # noqa: F401
        except ImportError as exc:
            ctx.report["ray"] = skipped(f"Ray or the service stack is not importable here: {exc}")
        else:
            budget = min(ctx.ray_budget, ctx.budget.left() - 5)
            if budget < 20:
                ctx.report["ray"] = skipped("time budget")
            else:
                size = ctx.sizes[0]
                job = {
                    "weights": ctx.weights,
                    "device": str(ctx.device),
                    "precision": ctx.fastest_reduced(size) or "fp32",
                    "width": size.width,
                    "height": size.height,
                    "size": size.name,
                    "frames": ctx.clip_frames,
                }
                finished, note = child("ray", job, budget)
                ctx.report["ray"] = finished[0] if finished else skipped(note)
    ctx.write()


# ---------------------------------------------------------------------------------- children


def child(kind: str, job: dict[str, Any], budget: float) -> tuple[list[dict[str, Any]], str]:
    """Run `run.py --child kind` with `job`; results it printed before it ended or was killed,
    and what to say about the cases it did not reach.

    The child leads a process group of its own and writes to files, not pipes: inductor's
    compile workers (and Ray's) are its children, and killing the group at the budget stops
    them too, where a killed child alone could leave them holding a pipe open."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(job)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, start_new_session=True)
        try:
            code = proc.wait(timeout=budget)
            note = f"the {kind} child exited with {code} before reaching this case"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code, note = None, f"time budget: the {kind} stage was stopped after {budget:.0f} s"
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        if code:
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
            note += f": {tail[0][:300]}"
    results = [
        json.loads(line[len("RESULT ") :])
        for line in stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    return results, note


def child_compile(job: dict[str, Any]) -> None:
    device = torch.device(job["device"])
    torch.backends.cudnn.benchmark = job["cudnn_benchmark"]
    for case in job["cases"]:
        size = Size(case["size"], case["width"], case["height"], case["scale"])
        batch, mode = case["batch"], case["mode"]
        interp = build_interpolator(
            job["weights"], job["device"], case["precision"], size.scale, batch
        )
        compile_mode = "reduce-overhead" if mode == "compile-cudagraph" else "default"
        interp.net = torch.compile(interp.net, mode=compile_mode, dynamic=False)  # type: ignore[assignment]
        pairs = scene_pairs(batch, size, device)
        ts = torch.full((batch,), 0.5, device=device)

        # reduce-overhead replays write into the same buffers: copy out before the next.
        run = forward(interp, pairs, ts, copy=mode == "compile-cudagraph")

        started = time.perf_counter()
        try:
            run()
            sync(device)
            setup = time.perf_counter() - started
            reference = np.load(case["reference"])
            result = measure_case(
                interp, size, batch, run, reference, job["seconds"], job["warmup"]
            )
            result["setup_s"] = round(setup, 2)
        except Exception as exc:  # inductor raises many types; the reason is what matters
            result = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
        fields = {
            k: case[k] for k in ("size", "width", "height", "scale", "precision", "batch", "mode")
        }
        print("RESULT " + json.dumps({**fields, **result}), flush=True)


def child_ray(job: dict[str, Any]) -> None:
    import ray

    from bench.clips import write_clip
    from bench.pipeline import pipeline
    from reframe.sched import available_cpus

    gpus = 1 if job["device"].startswith("cuda") else 0
    with tempfile.TemporaryDirectory(prefix="reframe-gpu-ray-") as tmp:
        work = Path(tmp)
        source = write_clip(work / "source.mp4", job["width"], job["height"], job["frames"])
        started = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=available_cpus(),
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
        )
        try:
            ray_up = time.perf_counter() - started
            result = pipeline(
                source,
                work / "out.mp4",
                Fraction(TARGET_FPS),
                actors=1,
                chunk_frames=job["frames"],
                work=work,
                threads=1 if gpus else available_cpus(),
                preset="medium",
                num_gpus=float(gpus),
                device=job["device"] if gpus else "cpu",
                precision=job["precision"],
                weights=Path(job["weights"]),
            )
        finally:
            ray.shutdown()
    wall, frames = result["wall_s"], result["frames"]
    fields = {k: job[k] for k in ("size", "width", "height", "precision")}
    timings = {k: round(result[k], 2) for k in ("wall_s", "plan_s", "startup_s", "work_s")}
    print(
        "RESULT "
        + json.dumps(
            {
                "status": "ok",
                **fields,
                "actors": 1,
                "gpus_per_actor": gpus,
                "ray_start_s": round(ray_up, 2),
                **timings,
                "output_frames": frames,
                "output_fps": round(frames / wall, 2),
                "output_fps_rendering": round(frames / max(1e-9, result["work_s"]), 2),
            }
        ),
        flush=True,
    )


# ---------------------------------------------------------------------------------- context


class Context:
    def __init__(self, args: argparse.Namespace, tmp: str) -> None:
        self.args = args
        self.tmp = tmp
        self.device = torch.device(args.device)
        self.sizes = sizes_for(args.sizes.split(","), args.quick)
        self.precisions = args.precisions.split(",")
        self.weights = args.weights
        self.seconds = args.seconds
        self.warmup = 1 if args.quick else 3
        self.reserve = args.reserve
        self.compile_budget = args.compile_budget
        self.ray = args.ray
        self.ray_budget = args.ray_budget
        self.clip_frames = 6 if args.quick else 48
        self.budget = Budget(args.budget)
        self.out = args.out
        self._interps: dict[tuple[str, float], Interpolator] = {}
        self.report: dict[str, Any] = {
            "schema": SCHEMA,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "device": torch.cuda.get_device_name(self.device)
            if self.device.type == "cuda"
            else platform.processor() or platform.machine(),
            "device_type": self.device.type,
            "quick": args.quick,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "weights": "random" if args.weights == "random" else "rife-4.26",
            "settings": {
                "seconds_per_case": self.seconds,
                "budget_s": args.budget,
                "cudnn_benchmark": self.device.type == "cuda" and args.cudnn_benchmark == "on",
                "tf32": "PyTorch defaults (cuDNN may use TF32 for fp32 convolutions); the "
                "PSNR reference is strict fp32",
                "psnr_target_db": PSNR_TARGET_DB,
            },
            "engine": [],
            "best": [],
            "vram": {},
            "pipeline": [],
            "ray": {},
            "stages_s": {},
            "complete": False,
        }

    def batches_for(self, size: Size) -> list[int]:
        if self.args.batches:
            return [int(b) for b in self.args.batches.split(",")]
        return sorted({render_batch(size), 8})

    def interpolator(self, precision: str, size: Size) -> Interpolator:
        key = (precision, size.scale)
        if key not in self._interps:
            # max_batch 8: every batch here goes through in one forward, as in a render.
            self._interps[key] = build_interpolator(
                self.weights, str(self.device), precision, size.scale, 8
            )
        return self._interps[key]

    def release(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def reference_path(self, size: Size, batch: int) -> Path:
        return Path(self.tmp) / f"ref-{size.key}-b{batch}.npy"

    def save_reference(self, size: Size, batch: int, frames: np.ndarray) -> None:
        np.save(self.reference_path(size, batch), frames)

    def reference(self, size: Size, batch: int) -> np.ndarray:
        return np.asarray(np.load(self.reference_path(size, batch)))

    def add_engine(self, row: dict[str, Any]) -> None:
        self.report["engine"].append(row)

    def primary_batch(self, size: Size) -> int:
        """The render core's batch for the size when it is measured, else the first batch."""
        batches = self.batches_for(size)
        return render_batch(size) if render_batch(size) in batches else batches[0]

    def fastest_reduced(self, size: Size) -> str | None:
        """The reduced precision with the best eager fps at the primary batch, if any ran
        (and kept its PSNR)."""
        batch = self.primary_batch(size)
        rows = [
            r
            for r in self.report["engine"]
            if r["size"] == size.name
            and r["batch"] == batch
            and r["mode"] == "eager"
            and r["precision"] != "fp32"
            and r["status"] == "ok"
            and r.get("psnr_ok")
        ]
        return max(rows, key=lambda r: r["fps"])["precision"] if rows else None

    def pipeline_estimate(self, size: Size) -> float:
        """Seconds a pipeline render probably takes, from the eager fps at this size (its
        frames interpolated at that rate, plus decoding, analysis and encoding)."""
        rows = [r for r in self.report["engine"] if r["size"] == size.name and r.get("fps")]
        fps = max((r["fps"] for r in rows), default=1.0)
        pixels = size.width * size.height
        return 2 * self.clip_frames / fps + 0.05 * self.clip_frames * pixels / 2e6

    def compile_order(self) -> list[Size]:
        # 1080p first: the size most renders use, and the one whose answer says most.
        order = {"1080p": 0, "720p": 1, "2160p": 2}
        return sorted(self.sizes, key=lambda s: order.get(s.name, 3))

    def summarise(self) -> None:
        best = []
        groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for row in self.report["engine"]:
            groups.setdefault((row["size"], row["precision"], row["batch"]), []).append(row)
        for (size, precision, batch), rows in groups.items():
            ok = [r for r in rows if r["status"] == "ok"]
            eager = next((r for r in ok if r["mode"] == "eager"), None)
            if not ok:
                continue
            top = max(ok, key=lambda r: r["fps"])
            best.append(
                {
                    "size": size,
                    "precision": precision,
                    "batch": batch,
                    "mode": top["mode"],
                    "fps": top["fps"],
                    "speedup_over_eager": round(top["fps"] / eager["fps"], 3) if eager else None,
                    "psnr_min_db": top.get("psnr_min_db"),
                    "modes_tried": {r["mode"]: r["status"] for r in rows},
                }
            )
        self.report["best"] = best

    def write(self) -> None:
        self.summarise()
        self.report["elapsed_s"] = round(self.budget.elapsed(), 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu.json").write_text(json.dumps(self.report, indent=2) + "\n")


# ---------------------------------------------------------------------------------- main


def default_weights() -> str:
    """REFRAME_RIFE_WEIGHTS, else the model cache (pulled by `reframe models pull`)."""
    override = os.environ.get("REFRAME_RIFE_WEIGHTS")
    if override:
        return override
    from reframe.engine.weights import cached_weights_path

    model_dir = os.environ.get("REFRAME_MODEL_DIR")
    if model_dir is None:
        try:
            from reframe.config import Settings

            return str(cached_weights_path(Settings().model_dir))
        except ImportError:  # the GPU image has torch but not the service's dependencies
            model_dir = str(Path.home() / ".cache" / "reframe" / "models")
    return str(cached_weights_path(Path(model_dir)))


def update_manifest(report_path: Path, manifest_path: Path = MANIFEST) -> int:
    """Copy a full-size CUDA run's VRAM table into the model manifest's `gpu_memory`."""
    report = json.loads(report_path.read_text())
    if report.get("device_type") != "cuda" or report.get("quick"):
        print("the manifest takes VRAM measured on CUDA at full size only", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())
    vram = report["vram"]
    manifest["gpu_memory"] = {
        **manifest.get("gpu_memory", {}),
        "device": report["device"],
        "torch": report["torch"],
        "unit": vram["unit"],
        "what": vram["what"],
        "peak_allocated_mib": vram["peak_allocated_mib"],
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote gpu_memory ({report['device']}) into {manifest_path}")
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="every case at 1/32 of the size")
    parser.add_argument("--sizes", default="720p,1080p,2160p")
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    parser.add_argument("--batches", default="", help="e.g. 1,8 (default: render batch and 8)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per case")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for the whole run")
    parser.add_argument("--reserve", type=float, default=None, help="seconds kept for the end")
    parser.add_argument("--compile-budget", type=float, default=None)
    parser.add_argument("--ray", choices=("auto", "off"), default="auto")
    parser.add_argument(
        "--cudnn-benchmark",
        choices=("on", "off"),
        default="on",
        help="cuDNN autotuning for the timed cases (the render actors do not turn it on)",
    )
    parser.add_argument("--ray-budget", type=float, default=60.0)
    parser.add_argument("--weights", default=None, help="state dict path, or 'random'")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--update-manifest", type=Path, default=None, metavar="GPU_JSON")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.1 if args.quick else 1.0
    if args.reserve is None:
        args.reserve = 2.0 if args.quick else 15.0
    if args.compile_budget is None:
        args.compile_budget = 10.0 if args.quick else 150.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        kind, job = args.child
        {"compile": child_compile, "ray": child_ray}[kind](json.loads(job))
        return 0
    if args.update_manifest:
        return update_manifest(args.update_manifest, args.manifest)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: use --device cpu --quick to check the script", file=sys.stderr)
        return 2
    args.weights = args.weights or default_weights()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = args.cudnn_benchmark == "on"
    stages = [
        ("engine", engine_stage),
        ("vram", vram_stage),
        # Graph capture after the pipeline: a capture that fails could leave this process's
        # CUDA state unusable, and the stages after it run in child processes of their own.
        ("pipeline", pipeline_stage),
        ("cudagraph", cudagraph_stage),
        ("compile", compile_stage),
        ("ray", ray_stage),
    ]
    with tempfile.TemporaryDirectory(prefix="reframe-gpu-bench-") as tmp:
        ctx = Context(args, tmp)
        for name, stage in stages:
            began = time.perf_counter()
            print(f"[{ctx.budget.elapsed():6.1f} s] {name}", file=sys.stderr, flush=True)
            stage(ctx)
            ctx.report["stages_s"][name] = round(time.perf_counter() - began, 1)
        ctx.report["complete"] = True
        ctx.write()
    print(json.dumps(ctx.report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
