"""The client's preview: `preview=` on create_job/render and `--preview` on the command line."""

from __future__ import annotations

from pathlib import Path

from reframe_client.cli import build_parser

from tests.clients.conftest import LiveApi
from tests.clients.scripted import ScriptedRender
from tests.fixtures.media import make_clip


def test_previews_are_asked_for_priced_and_shown(live_api: LiveApi, tmp_path: Path) -> None:
    key = live_api.create_account(free=30)
    clip = make_clip(tmp_path / "clip.mp4", frames=96, fps=24)  # 4 s
    rendered = make_clip(tmp_path / "rendered.mp4", frames=48, fps=48)
    with live_api.client(key, poll_interval=0) as client:
        terms = client.pricing_config().previews
        assert (terms.free_per_day, terms.max_seconds, terms.watermarked) == (3, 5.0, True)
        quoted = client.estimate(12.4, 24, [60, 120], preview_seconds=2)
        assert [o.charged_xeconds for o in quoted.options] == [2, 4]
        assert quoted.preview_seconds == 2.0
        done = client.render(clip, 48, on_progress=ScriptedRender(live_api, rendered), preview=1)
        # The first of the day's three free previews.
        assert (done.job.preview, done.job.preview_seconds, done.job.charged_xeconds) == (
            True,
            1.0,
            0,
        )
        assert done.output == tmp_path / "clip-48fps-preview.mp4"
        up = client.upload(clip)
        video = client.estimate_video(up.key, [60], preview_seconds=3)
        assert (video.free_previews_left, video.options[0].charged_xeconds) == (2, 0)
        default = client.create_job(up.key, up.project_id, 60, preview=True)
        assert (default.preview, default.preview_seconds, default.charged_xeconds) == (
            True,
            3.0,
            0,
        )
        short = client.create_job(up.key, up.project_id, 120, preview=2.5)
        assert (short.preview_seconds, short.watermarked) == (2.5, True)
        full = client.create_job(up.key, up.project_id, 60)
        assert (full.preview, full.preview_seconds, full.charged_xeconds) == (False, None, 4)
        assert client.get_job(short.job_id).preview_seconds == 2.5
        paid = client.create_job(up.key, up.project_id, 60, preview=1)  # the 4th: ceil(1) x 1
        assert paid.charged_xeconds == 1
        assert client.me().balance.free_xeconds == 30 - 4 - 1


def test_the_cli_preview_flag_takes_an_optional_length() -> None:
    parser = build_parser()
    assert parser.parse_args(["render", "a.mp4", "--fps", "60"]).preview is False
    assert parser.parse_args(["render", "a.mp4", "--fps", "60", "--preview"]).preview is True
    assert parser.parse_args(["render", "a.mp4", "--fps", "60", "--preview", "2.5"]).preview == 2.5
