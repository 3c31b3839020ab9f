"""Chunk decoding for the render actor: decord's `get_batch` against PyAV seek + decode.

A render actor decodes the source frames of one chunk (`render_chunk` ->
`reframe.video.decode.iter_frames` with `frame_pts`: seek to the keyframe before the chunk,
decode forward, convert each frame of the span to RGB with the stream's own matrix and range).
This bench generates test clips (H.264 with B-frames and short GOPs, HEVC 8 and 10 bit, VP9 in
WebM and Matroska; untagged, BT.709, BT.601 and full range; 360p to 1080p and odd sizes), then
for each clip decodes the same random ~48-frame spans both ways, interleaved, and reports:

* time per chunk (median over chunks) for PyAV as the actor runs it (the file opened per chunk,
  `threads` decoder threads) and for decord (`VideoReader` opened once per actor, its open and
  index cost shown separately), and their ratio;
* exactness: the largest per-channel difference, over every pixel of every frame decoded,
  against sequential PyAV decoding from the start of the file (what the single-process render
  and the stitched-equals-single-process property treat as truth), plus whether decord counts
  the same frames.

    .venv/bin/python bench/decode.py                 # ~5 min on the 2-core dev machine
    .venv/bin/python bench/decode.py --quick         # 4 small clips, for a smoke run

Writes bench/out/decode.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from bench.clips import write_clip  # noqa: E402  (after the path is set)

# The GOP the pipeline tests use: a keyframe every 12 frames, two B-frames between P-frames.
X264 = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2:b-adapt=0:b-pyramid=normal"}
X265 = {
    "preset": "fast",
    "x265-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2:b-adapt=0:log-level=error",
}
VP9 = {"g": "12", "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "8"}
AV1 = {"preset": "12", "svtav1-params": "keyint=12"}

# FFmpeg's AVColorSpace / AVColorRange values, as tagged in the generated streams.
BT709, BT601 = 1, 6  # 6 is SMPTE 170M, the BT.601 matrix as cameras tag it
LIMITED, FULL = 1, 2


@dataclass(frozen=True)
class Case:
    name: str
    width: int
    height: int
    codec: str = "libx264"
    suffix: str = ".mp4"
    pix_fmt: str = "yuv420p"
    matrix: int | None = None  # None: left unspecified, as many files do
    range: int | None = None
    options: dict[str, str] = field(default_factory=lambda: dict(X264))


CASES = [
    Case("h264 360p untagged", 640, 360),
    Case("h264 720p untagged", 1280, 720),
    Case("h264 720p bt709", 1280, 720, matrix=BT709, range=LIMITED),
    Case("h264 720p bt601", 1280, 720, matrix=BT601, range=LIMITED),
    Case("h264 720p full range (yuvj420p)", 1280, 720, pix_fmt="yuvj420p", range=FULL),
    Case("h264 1080p untagged", 1920, 1080),
    Case("h264 1080p bt709", 1920, 1080, matrix=BT709, range=LIMITED),
    Case("h264 odd 4:4:4 641x361", 641, 361, pix_fmt="yuv444p"),
    Case("hevc 720p bt709", 1280, 720, codec="libx265", matrix=BT709, range=LIMITED,
         options=dict(X265)),
    Case("hevc 1080p 10-bit untagged", 1920, 1080, codec="libx265", pix_fmt="yuv420p10le",
         options=dict(X265)),
    Case("vp9 webm 360p", 640, 360, codec="libvpx-vp9", suffix=".webm", options=dict(VP9)),
    Case("vp9 mkv odd 639x359 bt709", 639, 359, codec="libvpx-vp9", suffix=".mkv",
         matrix=BT709, range=LIMITED, options=dict(VP9)),
    Case("av1 mp4 360p", 640, 360, codec="libsvtav1", options=dict(AV1)),
]  # fmt: skip

QUICK = [
    Case("h264 360p untagged", 320, 180),
    Case("h264 720p untagged", 1280, 720),
    Case("h264 full range (yuvj420p)", 320, 180, pix_fmt="yuvj420p", range=FULL),
    Case("vp9 webm odd 321x181", 321, 181, codec="libvpx-vp9", suffix=".webm", options=dict(VP9)),
]


def make_clip(case: Case, path: Path, frames: int) -> Path:
    return write_clip(
        path,
        case.width,
        case.height,
        frames,
        codec=case.codec,
        pix_fmt=case.pix_fmt,
        options=case.options,
        matrix=case.matrix,
        color_range=case.range,
    )


def frame_kinds(path: Path) -> tuple[int, list[int]]:
    """How many B-frames, and the presentation indices of the keyframes."""
    import av

    b_frames, keys = 0, []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            b_frames += frame.pict_type == av.video.frame.PictureType.B
            if frame.key_frame:
                keys.append(i)
    return b_frames, keys


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape:
        return 256  # a shape mismatch is worse than any pixel difference
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def span_diff(got: Any, truth: list[np.ndarray], start: int, stop: int) -> int:
    """Largest difference of decoded frames ``[start, stop)`` against the truth; a missing or
    extra frame counts as 256."""
    if len(got) != stop - start:
        return 256
    return max(max_diff(g, truth[start + i]) for i, g in enumerate(got))


def pyav_chunk(path: Path, start: int, stop: int, pts: list[int], threads: int) -> list[Any]:
    from reframe.video.decode import iter_frames

    return [
        f.rgb for f in iter_frames(path, start=start, stop=stop, frame_pts=pts, threads=threads)
    ]


def run_case(
    case: Case,
    workdir: Path,
    *,
    frames: int,
    chunks: int,
    span: int,
    threads: int,
    repeats: int,
    seed: int,
) -> dict[str, Any]:
    import decord

    from reframe.video.decode import iter_frames, read_video_info

    path = make_clip(case, workdir / f"clip{case.suffix}", frames)
    info = read_video_info(path)
    truth_frames = list(iter_frames(path, threads=threads))
    truth = [f.rgb for f in truth_frames]
    pts = [f.pts for f in truth_frames]
    n = len(truth)
    rng = np.random.default_rng(seed)
    b_frames, keys = frame_kinds(path)
    starts = {0}  # one chunk at the very start, where there is nothing to seek
    starts |= {int(s) for s in rng.integers(1, max(2, n - span), size=chunks - 1)}
    # Around two keyframes: where random access goes wrong (open-GOP leading pictures are
    # shown just before their keyframe; decoders restarting at a keyframe can misplace frames).
    starts |= {s for k in keys[1:3] for s in (k - 2, k, k + 2) if 0 < s < n - span}
    result: dict[str, Any] = {
        "case": case.name,
        "codec": info.codec,
        "pix_fmt": info.pix_fmt,
        "size": f"{info.width}x{info.height}",
        "color": asdict(info.color),
        "frames": n,
        "b_frames": b_frames,
        "keyframes": keys,
        "bytes": path.stat().st_size,
        "span": span,
        "chunks": len(starts),
        "repeats": repeats,
    }
    opened = time.perf_counter()
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
    except decord.DECORDError as exc:
        result["decord_error"] = f"cannot open: {exc}"
        reader = None
    result["decord_open_ms"] = 1000 * (time.perf_counter() - opened)
    # Per chunk, the best of `repeats` tries of each: the machine is shared, and the fastest
    # try is the one least disturbed by other work.
    pyav_s: list[float] = []
    decord_s: list[float] = []
    pyav_diff = decord_diff = 0
    for start in sorted(starts):
        stop = min(n, start + span)
        tries: dict[str, list[float]] = {"pyav": [], "decord": []}
        for attempt in range(repeats):
            # Alternate which runs first so a load change hits both evenly.
            order = ("pyav", "decord") if attempt % 2 == 0 else ("decord", "pyav")
            for which in order:
                began = time.perf_counter()
                if which == "pyav":
                    got: Any = pyav_chunk(path, start, stop, pts, threads)
                    tries["pyav"].append(time.perf_counter() - began)
                    pyav_diff = max(pyav_diff, span_diff(got, truth, start, stop))
                elif reader is not None:
                    got = reader.get_batch(list(range(start, min(stop, len(reader))))).asnumpy()
                    tries["decord"].append(time.perf_counter() - began)
                    decord_diff = max(decord_diff, span_diff(got, truth, start, stop))
                got = None  # drop the frames before the next try decodes its own
        pyav_s.append(min(tries["pyav"]))
        if tries["decord"]:
            decord_s.append(min(tries["decord"]))
    result["pyav_ms"] = 1000 * statistics.median(pyav_s)
    result["pyav_max_diff"] = pyav_diff
    if reader is not None:
        result["decord_frames"] = len(reader)
        result["decord_ms"] = 1000 * statistics.median(decord_s)
        result["decord_over_pyav"] = result["decord_ms"] / result["pyav_ms"]
        # Also the whole clip in order: colour conversion and frame count, span-independent.
        whole = reader.get_batch(list(range(min(n, len(reader))))).asnumpy()
        full = [max_diff(g, truth[i]) for i, g in enumerate(whole)]
        result["decord_chunk_max_diff"] = decord_diff
        result["decord_sequential_max_diff"] = max(*full, span_diff(whole, truth, 0, n))
        result["decord_max_diff"] = max(decord_diff, result["decord_sequential_max_diff"])
        result["decord_exact"] = result["decord_max_diff"] == 0 and len(reader) == n
        worst = int(np.argmax(full))
        result["decord_mean_abs_diff_worst_frame"] = float(
            np.abs(whole[worst].astype(np.int16) - truth[worst].astype(np.int16)).mean()
        )
        del reader
    else:
        result["decord_exact"] = False
    return result


IMPORT_ORDER_PROBE = """
import sys
first, second = sys.argv[1:3]
__import__(first)
__import__(second)
import av
import numpy as np
with av.open(sys.argv[3], "w") as out:
    stream = out.add_stream("libvpx-vp9", rate=24)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
    for packet in [*stream.encode(frame), *stream.encode()]:
        out.mux(packet)
"""


def import_order_check(workdir: Path) -> dict[str, str]:
    """decord bundles its own FFmpeg 4.1 and libvpx; whether PyAV's VP9 encoder (what the
    service writes WebM outputs with) still opens when decord is imported first or second."""
    import subprocess

    outcome = {}
    for first, second in (("av", "decord"), ("decord", "av")):
        proc = subprocess.run(
            [sys.executable, "-c", IMPORT_ORDER_PROBE, first, second, str(workdir / "o.webm")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        outcome[f"import {first} then {second}"] = "ok" if proc.returncode == 0 else tail[0]
    return outcome


def markdown(results: list[dict[str, Any]], threads: int) -> str:
    lines = [
        "| clip | frames (B) | PyAV ms/chunk | decord ms/chunk | decord / PyAV | decord open ms "
        "| PyAV chunks max diff | decord chunks / in order max diff | decord exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if "decord_ms" in r:
            dec = (
                f"{r['decord_ms']:.1f} | {r['decord_over_pyav']:.2f} | {r['decord_open_ms']:.0f} "
                f"| {r['pyav_max_diff']} "
                f"| {r['decord_chunk_max_diff']} / {r['decord_sequential_max_diff']} | "
                f"{'yes' if r['decord_exact'] else 'NO'}"
            )
            if r["decord_frames"] != r["frames"]:
                dec += f" ({r['decord_frames']} frames)"
        else:
            dec = f"— | — | — | {r['pyav_max_diff']} | — | NO (cannot open the file)"
        lines.append(
            f"| {r['case']} | {r['frames']} ({r['b_frames']}) | {r['pyav_ms']:.1f} | {dec} |"
        )
    lines.append(f"\n{threads} decoder thread(s) each, as the render actor runs them.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="decord vs PyAV for chunk decoding")
    parser.add_argument("--frames", type=int, default=192, help="frames per generated clip")
    parser.add_argument("--chunks", type=int, default=8, help="random chunk spans per clip")
    parser.add_argument("--span", type=int, default=48, help="source frames per chunk")
    parser.add_argument("--threads", type=int, default=1, help="decoder threads (actor: 1)")
    parser.add_argument("--repeats", type=int, default=2, help="tries per chunk (best counts)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="4 small clips, 3 chunks")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    # PyAV before decord: loaded the other way round, decord's bundled FFmpeg libraries break
    # PyAV's VP9 encoder in this process (import_order_check shows it).
    import av

    try:
        import decord
    except ImportError:
        # Not a dependency any more (bench/README.md says why); the comparison needs it.
        print("install decord to rerun this: .venv/bin/pip install decord==0.6.0", file=sys.stderr)
        return 2

    cases = QUICK if args.quick else CASES
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    frames, chunks = (72, 3) if args.quick else (args.frames, args.chunks)
    results = []
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
    with tempfile.TemporaryDirectory(prefix="reframe-bench-decode-") as tmp:
        import_order = import_order_check(Path(tmp))
        for case in cases:
            result = run_case(
                case,
                Path(tmp),
                frames=frames,
                chunks=chunks,
                span=args.span,
                threads=args.threads,
                repeats=args.repeats,
                seed=args.seed,
            )
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            (Path(tmp) / f"clip{case.suffix}").unlink()
    table = markdown(results, args.threads)
    table += "\nPyAV's libvpx-vp9 encoder after " + "; ".join(
        f"{k}: {v}" for k, v in import_order.items()
    )
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join(["bench/decode.py", *(argv if argv is not None else sys.argv[1:])]),
        "pyav": av.__version__,
        "decord": decord.__version__,
        "threads": args.threads,
        "all_exact": all(r["decord_exact"] for r in results),
        "import_order": import_order,
        "results": results,
    }
    (args.out / "decode.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "decode.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
