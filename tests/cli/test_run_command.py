"""The README's run command as a user runs it: `scripts/run` on a fresh data dir serves the
README's curl workflow with the real engine through to `done`, then stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest

from tests.fixtures.cluster import free_port
from tests.fixtures.media import make_clip

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.weights, pytest.mark.ray, pytest.mark.own_ray]


def readme_workflow(api: str, key: str) -> str:
    """The README's canonical curl block, with its two placeholders filled in."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("The canonical workflow, against a local service:")
    block = readme[start:].split("```bash\n", 1)[1].split("```", 1)[0]
    block, found_api = re.subn(r"^API=.*$", f"API={api}", block, count=1, flags=re.M)
    block, found_key = re.subn(r"^KEY=.*$", f"KEY={key}", block, count=1, flags=re.M)
    assert found_api == found_key == 1, "the README's workflow no longer sets API= and KEY="
    return "set -euo pipefail\n" + block


class Service:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, env: dict[str, str], log: Path):
        self.proc, self.url, self.env, self.log = proc, url, env, log

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def service(rife_weights: Path, tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        # A user's first run: embedded defaults, whatever this test process was configured with.
        if not name.startswith(("REFRAME_", "RAY_"))
    }
    env.update(
        REFRAME_DATA_DIR=str(tmp_path / "var"),
        REFRAME_RIFE_WEIGHTS=str(rife_weights),  # no download in the test
    )
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "scripts/run", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(proc, f"http://127.0.0.1:{port}", env, log)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"the service exited early:\n{service.log_tail()}"
            assert time.monotonic() < deadline, f"no /healthz in 240 s:\n{service.log_tail()}"
            try:
                if httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield service
    finally:
        if proc.poll() is None:
            # The test stops it with SIGTERM; this backstop must not reach beyond the service's
            # own processes (`ray stop` would also take down the test session's Ray).
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_readme_run_command_serves_the_curl_workflow_to_done_and_stops_on_sigterm(
    service: Service, tmp_path: Path
) -> None:
    created = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "reframe"), "accounts", "create", "--email", "u@x.io"],
        env=service.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = re.search(r"rf_live_[A-Za-z0-9_-]+", created.stdout)
    assert key is not None, created.stdout
    work = tmp_path / "client"
    work.mkdir()
    make_clip(work / "clip.mp4", frames=48, fps=24, audio=True)  # 2 s with a tone

    run = subprocess.run(
        ["bash", "-c", readme_workflow(service.url, key.group(0))],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{service.log_tail()}"
    statuses = re.findall(r"^status=(\w+)$", run.stdout, flags=re.M)
    assert statuses[-1] == "done", f"{run.stdout}\n{service.log_tail()}"

    with av.open(str(work / "smooth.mp4")) as output:
        video = output.streams.video[0]
        assert video.average_rate == Fraction(60)
        assert output.streams.audio, "the source's audio is missing from the output"
        frames = sum(1 for _ in output.decode(video))
    assert 118 <= frames <= 122  # 2 s at 60 fps

    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=120) == 0, service.log_tail()
    with pytest.raises(httpx.ConnectError):  # nothing (HAProxy included) still holds the port
        httpx.get(f"{service.url}/healthz", timeout=2)
