"""The customer's clients render real clips to `done` with the real engine: the API served by
uvicorn on loopback, the dispatcher actor on the session's Ray running the real pipeline with
the RIFE 4.26 weights, PostgreSQL, local storage. Driven as a customer drives them:
`reframe-client render` (both progress bars), the README's Python block, and the JavaScript
workflow under node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import pytest
from reframe_client.models import JobStatus

from reframe.db import make_engine, make_sessionmaker
from reframe.serving import start_dispatcher
from tests.clients.conftest import LiveApi, start_live_api
from tests.fixtures.db import TestDatabase, _create_postgres_schema, _drop_postgres_schema
from tests.fixtures.media import make_clip

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / ".venv" / "bin" / "reframe-client"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

pytestmark = [pytest.mark.postgres, pytest.mark.ray, pytest.mark.weights, pytest.mark.slow]


@pytest.fixture(scope="module")
def service(
    ray_runtime: ModuleType, rife_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    schema, url = _create_postgres_schema()
    engine = make_engine(url)
    db = TestDatabase("postgres", url, engine, make_sessionmaker(engine))
    try:
        with ExitStack() as stack:
            api = start_live_api(
                stack,
                db,
                tmp_path_factory.mktemp("service"),
                rife_weights=rife_weights,
                # The limits customers get, not the tests' unlimited default.
                rate_limit_read_per_sec=20.0,
                rate_limit_write_per_sec=2.0,
                dispatch_poll_sec=0.2,
                max_concurrent_renders=1,
            )
            stack.callback(start_dispatcher(api.settings, launcher="subprocess")[1])
            yield api
    finally:
        engine.dispose()
        _drop_postgres_schema(schema)


def customer(tmp_path: Path, service: LiveApi) -> tuple[Path, dict[str, str]]:
    """A working folder with a 2 s clip with sound, and the environment a customer sets."""
    make_clip(tmp_path / "clip.mp4", frames=48, fps=24, audio=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFRAME_")}
    env.update(REFRAME_API_KEY=service.create_account(free=30), REFRAME_API_URL=service.base_url)
    return tmp_path, env


def run_in(work: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def probe(path: Path) -> tuple[Fraction, int, bool]:
    """(frame rate, decoded frame count, has audio) of a rendered file."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate = video.average_rate
        assert rate is not None
        frames = sum(1 for _ in container.decode(video))
        return Fraction(rate), frames, bool(container.streams.audio)


def assert_rendered_at_60(path: Path) -> int:
    rate, frames, audio = probe(path)
    assert rate == 60
    assert 118 <= frames <= 122, frames  # 2 s at 60 fps
    assert audio, "the source's sound is missing"
    return frames


def test_reframe_client_render_to_done_with_both_progress_bars(
    service: LiveApi, tmp_path: Path
) -> None:
    work, env = customer(tmp_path, service)
    # A terminal as far as rich is concerned, so every refresh of the bars is in the output.
    env.update(TTY_INTERACTIVE="1", TTY_COMPATIBLE="1", NO_COLOR="1", COLUMNS="160")
    argv = ["render", "clip.mp4", "--fps", "60", "-o", "smooth.mp4", "--poll-interval", "0.5"]
    run = run_in(work, env, str(CLIENT), *argv)
    bars = ANSI.sub("", run.stderr)
    assert run.returncode == 0, f"{run.stdout}\n{bars[-3000:]}"
    frames = assert_rendered_at_60(work / "smooth.mp4")

    size = (work / "clip.mp4").stat().st_size
    uploads = re.findall(r"upload\s.*?(\d+)%", bars)
    assert uploads[-1] == "100", bars[-2000:]
    assert f"{size / 1000:.1f} kB/{size / 1000:.1f} kB" in bars
    renders = re.findall(r"render\s.*?(\d+|\?)/(\d+|\?) frames(?: · ETA [\d:]+)? · (\w+)", bars)
    assert renders, bars[-2000:]
    assert renders[-1] == (str(frames), str(frames), "done")
    statuses = list(dict.fromkeys(status for *_, status in renders))
    print(f"render bar went through {statuses}; {len(renders)} refreshes")
    # The bar repaints ten times a second, so a state shorter than that (the moment between
    # POST /jobs and the first poll, or a queue the dispatcher empties at once) may never be
    # drawn. What must hold: every state shown is the client's or the job's own, and at least
    # one of the job's states before done was drawn.
    shown = set(statuses)
    assert shown <= {"waiting", "starting", *(s.value for s in JobStatus)}, statuses
    assert shown & {"pending", "queued", "no_workers", "cold_start", "processing"}, statuses
    assert re.search(rf"saved smooth\.mp4: {frames} frames at 60 fps", run.stdout), run.stdout


def readme_block(language: str, after: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index(after) :].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readmes_python_workflow_renders_to_done(service: LiveApi, tmp_path: Path) -> None:
    work, env = customer(tmp_path, service)
    code = readme_block("python", "## Python client")
    run = run_in(work, env, sys.executable, "-c", code)
    assert run.returncode == 0, run.stdout + run.stderr
    frames = assert_rendered_at_60(work / "smooth.mp4")
    assert f"saved smooth.mp4: {frames} frames" in run.stdout
    assert "status=done" in run.stdout


@pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed (apt-get install nodejs)"
)
def test_the_javascript_workflow_renders_to_done_under_node(
    service: LiveApi, tmp_path: Path
) -> None:
    work, env = customer(tmp_path, service)
    script = str(ROOT / "clients" / "js" / "render.mjs")
    run = run_in(work, env, "node", script, "clip.mp4", "60", "smooth.mp4")
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.findall(r"^status=(\w+)", run.stdout, flags=re.M)[-1] == "done", run.stdout
    assert_rendered_at_60(work / "smooth.mp4")
