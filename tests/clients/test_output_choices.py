"""The client's output choices and slow motion: `render(output_format=..., playback_fps=...)`
and the `reframe-client render` flags reach the real server, and the answers carry them back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reframe_client.cli import build_parser, main, output_choices

from reframe.db.models import Job
from tests.clients.conftest import LiveApi
from tests.clients.scripted import ScriptedRender
from tests.fixtures.media import make_clip


def test_render_sends_the_choices_and_saves_under_the_jobs_container(
    live_api: LiveApi, tmp_path: Path
) -> None:
    key = live_api.create_account(free=30)
    clip = make_clip(tmp_path / "clip.mp4")
    rendered = make_clip(tmp_path / "rendered.mkv", frames=48, fps=30)
    with live_api.client(key, poll_interval=0) as client:
        done = client.render(
            clip,
            120,
            output_format={"container": "mkv", "codec": "hevc", "quality": "standard"},
            playback_fps=30,
            on_progress=ScriptedRender(live_api, rendered),
        )
    assert done.job.output.container == "mkv"
    assert (done.job.output.codec, done.job.output.crf) == ("hevc", 28)
    assert done.job.output.audio == "none"  # slow motion
    assert done.job.playback_fps == 30
    assert done.output == tmp_path / "clip-120fps-at-30fps.mkv"
    with live_api.db.session() as session:
        job = session.get(Job, done.job.job_id)
        assert job is not None
        assert job.render_options == {
            "output": {"container": "mkv", "codec": "hevc", "quality": "standard"},
            "playback_fps": 30,
        }


def test_cli_flags_become_the_output_object() -> None:
    flags = "--container mov --codec prores --quality visually_lossless --no-audio"
    args = build_parser().parse_args(
        ["render", "clip.mp4", "--fps", "240", *flags.split(), "--playback-fps", "30"]
    )
    assert output_choices(args) == {
        "container": "mov",
        "codec": "prores",
        "quality": "visually_lossless",
        "audio": "none",
    }
    assert args.playback_fps == 30
    crf = build_parser().parse_args(["render", "clip.mp4", "--fps", "60", "--quality", "20"])
    assert output_choices(crf) == {"quality": 20}
    assert output_choices(build_parser().parse_args(["render", "clip.mp4", "--fps", "60"])) is None


def test_cli_refused_choice_is_exit_1_with_the_servers_detail(
    live_api: LiveApi, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("REFRAME_API_URL", live_api.base_url)
    key = live_api.create_account(free=30)
    clip = make_clip(tmp_path / "clip.mp4")
    argv = [
        "render", str(clip), "--fps", "48", "--container", "mp4", "--codec", "prores",
        "--api-key", key,
    ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot be written to mp4" in err
    assert "mov: h264, hevc, prores" in err
