"""`reframe-client` commands against the real app over real HTTP (the render command runs end
to end with the real engine in test_render_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reframe_client.cli import main

from tests.clients.conftest import LiveApi
from tests.clients.scripted import ScriptedRender
from tests.fixtures.media import make_clip


@pytest.fixture
def run(
    live_api: LiveApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    monkeypatch.setenv("COLUMNS", "200")  # rich's width when stdout is not a terminal
    monkeypatch.setenv("REFRAME_API_URL", live_api.base_url)
    monkeypatch.delenv("REFRAME_API_KEY", raising=False)

    def invoke(*args: str, key: str | None = None) -> tuple[int, str, str]:
        argv = [*args, *(["--api-key", key] if key is not None else [])]
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_me_prints_the_account_and_reads_the_key_from_the_environment(
    run: Any, live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = live_api.create_account(free=30, paid=5)
    code, out, _ = run("me", key=key)
    assert code == 0
    assert "balance: 35 xeconds (5 paid, 30 free" in out
    monkeypatch.setenv("REFRAME_API_KEY", key)
    code, out, _ = run("me", "--json")
    assert code == 0
    assert json.loads(out)["balance"] == {
        "free_xeconds": 30,
        "paid_xeconds": 5,
        "total_xeconds": 35,
    }


def test_a_bad_key_is_exit_1_with_the_servers_detail(run: Any) -> None:
    code, out, err = run("me", key="rf_live_wrong")
    assert code == 1
    assert out == ""
    assert err.startswith("error: 401: ")


def test_bad_arguments_are_exit_2(run: Any) -> None:
    with pytest.raises(SystemExit) as usage:
        run("render", "clip.mp4")  # no --fps
    assert usage.value.code == 2


def test_estimate_a_file_and_from_metadata(run: Any, live_api: LiveApi, tmp_path: Path) -> None:
    key = live_api.create_account(free=30)
    clip = make_clip(tmp_path / "clip.mp4", frames=48, fps=24)  # 2 s
    code, out, _ = run("estimate", str(clip), "--fps", "60", "120", "240", key=key)
    assert code == 0
    rows = {line.split()[1]: line for line in out.splitlines() if line.strip()[:1] == "│"}
    assert [" 2 " in rows["60"], " 4 " in rows["120"], " 8 " in rows["240"]] == [True] * 3
    assert "watermarked" in rows["60"]

    code, out, _ = run(
        "estimate", "--duration", "12.4", "--source-fps", "24", "--fps", "60", "--json"
    )
    assert code == 0
    assert json.loads(out)["options"][0]["charged_xeconds"] == 13
    code, _, err = run("estimate", "--fps", "60")
    assert code == 2
    assert "needs a file" in err


def test_jobs_download_and_share(
    run: Any, live_api: LiveApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = live_api.create_account(free=30)
    clip = make_clip(tmp_path / "clip.mp4")
    rendered = make_clip(tmp_path / "rendered.mp4", frames=48, fps=48)
    with live_api.client(key, poll_interval=0) as client:
        done = client.render(
            clip, 48, tmp_path / "first.mp4", on_progress=ScriptedRender(live_api, rendered)
        )
        up = client.upload(clip)
        queued = client.create_job(up.key, up.project_id, 60)
    monkeypatch.chdir(tmp_path)

    code, out, _ = run("jobs", key=key)
    assert code == 0
    assert done.job.job_id in out
    assert queued.job_id in out
    assert "jobs 1-2 of 2" in out

    code, out, _ = run("jobs", queued.job_id, "--json", key=key)
    assert code == 0
    assert json.loads(out)["live_status"] == "queued"

    code, _, err = run("download", queued.job_id, key=key)
    assert code == 1
    assert "is queued" in err

    code, out, _ = run("download", done.job.job_id, key=key)
    assert code == 0
    saved = tmp_path / f"{done.job.job_id}.mp4"
    assert saved.read_bytes() == rendered.read_bytes()
    assert f"saved {saved.name}" in out

    code, out, _ = run("jobs", queued.job_id, "--cancel", key=key)
    assert code == 0
    assert "live_status: cancelled" in out
    code, _, err = run("jobs", queued.job_id, "--cancel", key=key)
    assert code == 1
    assert "409" in err

    code, out, _ = run("share", "--job", done.job.job_id, "--json", key=key)
    assert code == 0
    share = json.loads(out)
    assert share["project_id"] == done.job.project_id
    assert share["page_url"].endswith(f"/s/{share['token']}")
    code, out, _ = run("share", done.job.project_id, "--revoke", key=key)
    assert code == 0
    assert "revoked" in out


def test_delete_and_close_account(run: Any, live_api: LiveApi, tmp_path: Path) -> None:
    key = live_api.create_account(free=30)
    clip = make_clip(tmp_path / "clip.mp4")
    with live_api.client(key) as client:
        up = client.upload(clip)
        email = client.me().account.email
    code, out, _ = run("delete", up.project_id, key=key)
    assert code == 0
    assert "deleted" in out
    code, _, err = run("delete", up.project_id, key=key)
    assert code == 1
    assert "deleted" in err
    with pytest.raises(SystemExit):
        run("close-account", key=key)  # --confirm is required
    code, _, err = run("close-account", "--confirm", "other@example.com", key=key)
    assert code == 1
    assert "confirm" in err
    code, out, _ = run("close-account", "--confirm", email, key=key)
    assert code == 0
    assert "closed" in out
    code, _, err = run("me", key=key)
    assert code == 1
    assert "closed" in err
