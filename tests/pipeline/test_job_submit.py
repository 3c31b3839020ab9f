"""`ray job submit -- python pipelines/render.py --input ...` against a `ray start --head`
cluster with token authentication, chosen explicitly (never inherited from ~/.ray)."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cluster import BIN, ROOT, ray_head
from tests.fixtures.media import make_clip


@pytest.fixture
def head(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A private Ray head with token authentication; returns (dashboard URL, client env)."""
    with ray_head(tmp_path, auth_token=secrets.token_hex(16)) as cluster:
        assert cluster.dashboard_url is not None
        yield cluster.dashboard_url, {**cluster.env, "REFRAME_DATA_DIR": str(tmp_path / "data")}


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
