"""`ray job submit -- python pipelines/render.py --input ...` against a `ray start --head`
cluster with token authentication, chosen explicitly (never inherited from ~/.ray)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.media import make_clip

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def head(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A private `ray start --head --block`; returns (dashboard URL, client environment)."""
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "REFRAME_DATA_DIR": str(tmp_path / "data"),
    }
    dashboard = free_port()
    temp_dir = Path("/tmp") / f"rf-{secrets.token_hex(3)}"  # unix sockets need a short path
    process = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={free_port()}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            # The test session's own Ray (tests/fixtures/ray.py) already holds the default
            # agent ports; a second head on them starts no job agent ("No available agent").
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(BIN / "ray"), "job", "list", "--address", url],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail("the Ray head did not come up within 60 s")
        yield url, env
    finally:
        # `--block` tears its Ray processes down when it is told to stop; the process group
        # is ours alone (start_new_session), so nobody else's Ray is touched.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


@pytest.mark.ray
@pytest.mark.weights
@pytest.mark.slow
def test_ray_job_submit_renders_a_local_file(
    head: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    import av

    url, env = head
    source = make_clip(tmp_path / "in.mp4", frames=24, width=64, height=48, audio=True)
    output = tmp_path / "out.mp4"
    command = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        url,
        "--working-dir",
        str(ROOT),
        "--",
        "python",
        "pipelines/render.py",
        "--input",
        str(source),
        "--target-fps",
        "48",
        "-o",
        str(output),
        "--chunk-frames",
        "8",
    ]

    # The trap: a client without the token is refused, with Ray's message about it.
    anonymous = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    anonymous["RAY_AUTH_MODE"] = "disabled"
    anonymous["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    refused = subprocess.run(command, env=anonymous, capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "authentication" in (refused.stdout + refused.stderr).lower()

    deadline = time.monotonic() + 240
    while True:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, timeout=300
        )
        # Right after start-up the head's job agent may not have registered yet.
        if "No available agent" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in (done.stdout + done.stderr)
    with av.open(str(output)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert sum(1 for _ in container.decode(video=0)) == 48
