"""Polling load: GET /jobs/{id} at a fixed request rate against the service `scripts/run` starts.

    .venv/bin/python bench/polling.py                        # 100 req/s for 30 s
    .venv/bin/python bench/polling.py --rate 200 --seconds 10
    .venv/bin/python bench/polling.py --url http://127.0.0.1:8000 --key rf_live_... --job ID

Without --url it starts `scripts/run --port P` on a fresh data dir (SQLite, local storage, a
local Ray with the dispatcher; no Redis unless REFRAME_REDIS_URL is set), creates an account,
uploads a small clip, starts a 60 fps render and polls that job while it is queued/rendering.
The per-key read limit is raised for the run (REFRAME_RATE_LIMIT_READ_PER_SEC) so the bench
measures the service, not the limiter.

Requests are sent open-loop on a fixed schedule (one every 1/rate s, from one asyncio loop), and
latency is measured from the scheduled time, so a stalled server cannot hide its stall by
slowing the client down. Writes bench/out/polling.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode} before answering")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service did not answer /healthz within {timeout:.0f}s")


def prepare_job(url: str, data_dir: Path, *, clip_frames: int = 24) -> tuple[str, str]:
    """Create an account in the service's database, upload a clip and start a render."""
    from reframe.config import Settings
    from reframe.db import make_engine, make_sessionmaker
    from reframe.services import accounts
    from tests.fixtures.media import make_clip

    settings = Settings(data_dir=data_dir)
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        _account, issued = accounts.create_account(
            session, settings, f"bench-{os.urandom(4).hex()}@example.com", free_xeconds=1000
        )
        session.commit()
    engine.dispose()
    key = issued.plaintext
    headers = {"Authorization": f"Bearer {key}"}
    clip = make_clip(data_dir / "bench-clip.mp4", frames=clip_frames, width=320, height=192)
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        pre = client.post(
            "/upload/presign", json={"filename": "clip.mp4", "content_type": "video/mp4"}
        ).json()
        put = httpx.request(
            pre["method"], pre["upload_url"], content=clip.read_bytes(), headers=pre["headers"]
        )
        put.raise_for_status()
        job = client.post(
            "/jobs",
            json={"r2_key": pre["key"], "project_id": pre["project_id"], "target_fps": 60},
        )
        job.raise_for_status()
    return key, str(job.json()["job_id"])


def job_status(url: str, key: str, job_id: str) -> str:
    resp = httpx.get(f"{url}/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return str(resp.json()["live_status"])


def wait_processing(url: str, key: str, job_id: str, timeout: float = 300.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        status = job_status(url, key, job_id)
        if status == "processing":
            return time.monotonic() - start
        if status in ("done", "failed", "cancelled"):
            raise SystemExit(f"job {job_id} ended ({status}) before it was seen processing")
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} was not processing within {timeout:.0f}s")


def wait_terminal(url: str, key: str, job_id: str, timeout: float = 600.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if job_status(url, key, job_id) in ("done", "failed", "cancelled"):
            return time.monotonic() - start
        time.sleep(1.0)
    raise SystemExit(f"job {job_id} did not finish within {timeout:.0f}s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class RawHTTP:
    """A minimal HTTP/1.1 keep-alive GET client over asyncio streams.

    httpx costs about a millisecond of Python per request, on the same two cores as the
    service; this client costs a fraction of that, so the numbers describe the service rather
    than the load generator. `--client httpx` measures with httpx for comparison.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parsed = urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {parsed.netloc}\r\n{extra}\r\n".encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.append(writer)
        writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._head)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
        }
        if b"content-length" in fields:
            body = await reader.readexactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding") == b"chunked":
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")
            body = b"".join(parts)
        else:
            raise ValueError("response without Content-Length or chunked body")
        if fields.get(b"connection", b"").lower() == b"close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status, body

    async def close(self) -> None:
        for writer in self._all:
            writer.close()


def poll(
    url: str,
    key: str,
    job_id: str,
    rate: float,
    seconds: float,
    path: str = "/jobs/{job_id}",
    client: str = "raw",
) -> dict[str, Any]:
    """Open-loop load from one asyncio loop: light on the client's own CPU, which shares the
    machine with the service."""
    return asyncio.run(_poll(url, key, job_id, rate, seconds, path, client))


async def _poll(
    url: str, key: str, job_id: str, rate: float, seconds: float, path: str, client: str
) -> dict[str, Any]:
    total = int(rate * seconds)
    latencies: list[float] = []
    service_times: list[float] = []
    statuses: dict[str, int] = {}
    codes: dict[int, int] = {}
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    target = path.format(job_id=job_id)
    get: Callable[[], Awaitable[tuple[int, bytes]]]
    if client == "raw":
        raw = RawHTTP(url, headers)

        async def get() -> tuple[int, bytes]:
            return await raw.get(target)

        closer: Callable[[], Awaitable[None]] = raw.close
    else:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        session = httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits)

        async def get() -> tuple[int, bytes]:
            resp = await session.get(target)
            return resp.status_code, resp.content

        closer = session.aclose
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def one(i: int) -> None:
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        sent = loop.time()
        try:
            code, body = await asyncio.wait_for(get(), timeout=30)
        except (TimeoutError, OSError, ValueError, httpx.HTTPError) as exc:
            errors.append(repr(exc))
            return
        done = loop.time()
        latencies.append((done - scheduled) * 1000)
        service_times.append((done - sent) * 1000)
        codes[code] = codes.get(code, 0) + 1
        status = str(json.loads(body).get("live_status", "?")) if code == 200 else "?"
        statuses[status] = statuses.get(status, 0) + 1

    try:
        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        await closer()
    elapsed = loop.time() - start
    if not latencies:
        raise SystemExit(f"no request was answered: {errors[:3]}")
    return {
        "client": client,
        "requests": total,
        "answered": len(latencies),
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "http_codes": codes,
        "errors": errors[:5],
        "error_count": len(errors),
        "job_statuses_seen": statuses,
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p90": round(percentile(latencies, 90), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 2),
            "mean": round(statistics.fmean(latencies), 2),
        },
        "service_time_ms": {
            "p50": round(percentile(service_times, 50), 2),
            "p99": round(percentile(service_times, 99), 2),
        },
    }


def measure(args: argparse.Namespace, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One measurement: against --url, or against a service started here with `extra_env`."""
    proc: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "wait_done": args.wait_done,
        "during_render": args.during_render,
        "env": extra_env or {},
        "load_average_before": os.getloadavg(),
    }
    try:
        if args.url:
            url, key, job_id = args.url.rstrip("/"), args.key, args.job
        else:
            data_dir = Path(tempfile.mkdtemp(prefix="reframe-bench-"))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "REFRAME_DATA_DIR": str(data_dir),
                "REFRAME_RATE_LIMIT_READ_PER_SEC": str(max(1000.0, args.rate * 4)),
                "REFRAME_RATE_LIMIT_READ_BURST": str(int(max(1000.0, args.rate * 4))),
                **(extra_env or {}),
            }
            log_path = data_dir / "service.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    ["bash", str(ROOT / "scripts" / "run"), "--port", str(port)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            result["startup_sec"] = round(wait_healthy(url, proc, args.startup_timeout), 1)
            # 24 fps source frames: about 4 s of render per source second on two CPU cores at
            # 320x192, so during-render runs get a clip that outlasts them.
            frames = int(24 * (args.seconds / 2 + 10)) if args.during_render else 24
            key, job_id = prepare_job(url, data_dir, clip_frames=frames)
            result["service_log"] = str(log_path)
            if args.wait_done:
                result["render_sec"] = round(wait_terminal(url, key, job_id), 1)
            if args.during_render:
                result["wait_processing_sec"] = round(wait_processing(url, key, job_id), 1)
        result["path"] = args.path
        result.update(poll(url, key, job_id, args.rate, args.seconds, args.path, args.client))
        if args.during_render:
            result["status_after"] = job_status(url, key, job_id)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # `reframe serve` stops Ray, Serve and HAProxy
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return result


def summary(result: dict[str, Any]) -> str:
    latency = result["latency_ms"]
    return f"p50 {latency['p50']} ms, p99 {latency['p99']} ms (target p99 < 20 ms)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--url", help="poll an already running service (needs --key, --job)")
    parser.add_argument("--key")
    parser.add_argument("--job")
    parser.add_argument(
        "--path",
        default="/jobs/{job_id}",
        help="what to poll; /healthz gives the Serve baseline without database or auth",
    )
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument(
        "--wait-done",
        action="store_true",
        help="let the render finish before polling (measures polling without a render running)",
    )
    parser.add_argument(
        "--during-render",
        action="store_true",
        help="poll while the job renders (a clip long enough to outlast the run): how polling "
        "fares when renders share the machine",
    )
    parser.add_argument(
        "--compare-priority",
        action="store_true",
        help="with --during-render: measure with REFRAME_PROCESS_PRIORITY on, then off, "
        "back to back, and report the ratio of their p99",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: a minimal HTTP/1.1 client (default) or httpx",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "polling.json")
    args = parser.parse_args()
    if (args.wait_done or args.during_render) and args.url:
        parser.error("--wait-done and --during-render apply to the service this script starts")
    if args.wait_done and args.during_render:
        parser.error("choose one of --wait-done and --during-render")
    if args.compare_priority and not args.during_render:
        parser.error("--compare-priority needs --during-render (priority matters under load)")
    if args.url and not (args.key and args.job):
        parser.error("--url needs --key and --job")

    if args.compare_priority:
        runs = {
            "priority_on": measure(args, {"REFRAME_PROCESS_PRIORITY": "true"}),
            "priority_off": measure(args, {"REFRAME_PROCESS_PRIORITY": "false"}),
        }
        p99_on = runs["priority_on"]["latency_ms"]["p99"]
        p99_off = runs["priority_off"]["latency_ms"]["p99"]
        report: dict[str, Any] = {**runs, "p99_ratio_off_over_on": round(p99_off / p99_on, 2)}
    else:
        report = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if args.compare_priority:
        for name in ("priority_on", "priority_off"):
            print(f"{name}: {summary(report[name])}")
        print(f"p99 without priority / with: {report['p99_ratio_off_over_on']}x")
    else:
        print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
