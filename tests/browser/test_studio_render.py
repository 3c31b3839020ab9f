"""End to end in Chromium with the real engine: sign up -> key -> upload -> estimate -> render ->
done -> before/after -> share link opened logged out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from reframe.video.probe import ProbeLimits, probe_video
from tests.browser.test_studio_flow import sign_up
from tests.fixtures.browser import LiveStudio, Screenshots, rendering_studio
from tests.fixtures.media import make_clip

pytestmark = [pytest.mark.browser, pytest.mark.ray, pytest.mark.weights, pytest.mark.slow]

RENDER_TIMEOUT_MS = 240_000


def videos_playable(page: Page, scope: str) -> None:
    # readyState >= 2: the browser decoded real frames from the served file, not just a tag.
    page.wait_for_function(
        f"""() => {{
            const vids = [...document.querySelectorAll('{scope} video')];
            return vids.length === 2 && vids.every(v => v.readyState >= 2 && v.duration > 1.5);
        }}""",
        timeout=30_000,
    )


def test_end_to_end_render_to_done_and_share(
    page: Page,
    browser: Browser,
    live_studio_rendering: LiveStudio,
    screenshots: Screenshots,
    tmp_path: Path,
) -> None:
    studio = live_studio_rendering
    clip = make_clip(tmp_path / "square.mp4", frames=48, fps=24, audio=True)  # 2 s, 128x96

    sign_up(page, studio, "e2e@example.com")
    page.get_by_role("button", name="Generate API key").click()
    expect(page.get_by_label("Your new API key")).to_have_value(re.compile(r"^rf_live_"))

    page.get_by_label("Video clip").set_input_files(str(clip))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#estimate")).to_be_visible(timeout=30_000)
    expect(page.locator("#probe-fps")).to_have_text("24 fps")
    screenshots.take(page, "estimate")

    page.get_by_label(re.compile("^60 fps")).check()
    page.get_by_role("button", name="Start render").click()
    expect(page).to_have_url(re.compile(r"/studio/projects/[0-9a-f]{32}$"), timeout=15_000)
    job = page.locator("article.job")
    expect(job).to_have_count(1)
    screenshots.take(page, "render-accepted")

    # The status moves on without a reload (the page polls GET /jobs/{id}).
    expect(job).to_have_attribute(
        "data-status", re.compile("^(done|failed)$"), timeout=RENDER_TIMEOUT_MS
    )
    if job.get_attribute("data-status") != "done":
        screenshots.take(page, "render-failed")
        print(studio.render_logs())  # type: ignore[attr-defined]
        pytest.fail(f"the render failed: {job.locator('[data-role=error]').inner_text()}")
    videos_playable(page, "article.job")
    expect(job.get_by_role("link", name="Download the render")).to_be_visible()
    expect(job).to_contain_text("Watermarked")
    screenshots.take(page, "done-before-after")

    # The slider view of the same synchronized pair.
    job.get_by_role("button", name="Slider").click()
    job.get_by_label("Split").fill("30")
    expect(job.locator("[data-stage]")).to_have_class(re.compile("compare-slider"))
    job.get_by_role("button", name="Play").click()
    page.wait_for_function(
        "() => document.querySelector('article.job video.after').currentTime > 0.3", timeout=10_000
    )
    drift = page.evaluate(
        "() => { const [b, a] = document.querySelectorAll('article.job video');"
        " return Math.abs(a.currentTime - b.currentTime); }"
    )
    assert drift < 0.25
    screenshots.take(page, "done-slider")

    # The download link serves an MP4 at the target rate: 2 s at 60 fps, with the audio kept.
    href = job.get_by_role("link", name="Download the render").get_attribute("href")
    assert href
    output = page.request.get(href)
    assert output.status == 200
    assert output.body()[4:8] == b"ftyp"
    downloaded = tmp_path / "downloaded.mp4"
    downloaded.write_bytes(output.body())
    rendered = probe_video(downloaded, ProbeLimits())
    assert abs(rendered.fps - 60) < 0.01
    assert abs(rendered.frame_count - 120) <= 1
    assert (rendered.width, rendered.height) == (128, 96)
    assert rendered.has_audio

    page.get_by_role("button", name="Create share link").click()
    share_input = page.get_by_label("Review link")
    expect(share_input).to_have_value(re.compile(r"/s/[A-Za-z0-9_-]{32,}$"))
    share_url = share_input.input_value()

    anonymous = browser.new_context()
    try:
        viewer = anonymous.new_page()
        viewer.goto(share_url)
        videos_playable(viewer, "main")
        assert "e2e@example.com" not in viewer.locator("body").inner_text()
        expect(viewer.get_by_role("link", name="Download the render")).to_be_visible()
        screenshots.take(viewer, "share-page-before-after")
    finally:
        anonymous.close()


def test_failed_render_shows_the_reason_and_the_refund(
    page: Page, screenshots: Screenshots, tmp_path: Path
) -> None:
    # A real failure, not a simulated one: the dispatcher runs pipelines/render.py, whose engine
    # is configured with weights that do not exist. One attempt, because a retry would fail the
    # same way and only double the test's time.
    missing = tmp_path / "no-such-flownet.pkl"
    with rendering_studio(tmp_path, rife_weights=missing, max_attempts=1) as studio:
        clip = make_clip(tmp_path / "tiny.mp4", frames=24, fps=24, width=96, height=64)
        sign_up(page, studio, "fails@example.com")
        page.get_by_label("Video clip").set_input_files(str(clip))
        page.get_by_role("button", name="Upload").click()
        expect(page.locator("#estimate")).to_be_visible(timeout=30_000)
        page.get_by_label(re.compile("^60 fps")).check()
        page.get_by_role("button", name="Start render").click()
        expect(page).to_have_url(re.compile(r"/studio/projects/[0-9a-f]{32}$"), timeout=15_000)

        job = page.locator("article.job")
        expect(job).to_have_attribute(
            "data-status", re.compile("^(done|failed)$"), timeout=RENDER_TIMEOUT_MS
        )
        assert job.get_attribute("data-status") == "failed", studio.render_logs()  # type: ignore[attr-defined]
        # The page shows the job's own reason (not its generic fallback), and the whole charge
        # (1 s at 60 fps = 1 xecond) is back.
        job_id = job.get_attribute("data-job-id")
        record = page.request.get(f"{studio.base_url}/jobs/{job_id}").json()
        assert record["error"]
        assert record["refunded_xeconds"] == record["charged_xeconds"] == 1
        expect(job.locator("[data-role=error]")).to_have_text(record["error"])
        expect(job.locator("[data-role=refund]")).to_have_text(
            "1 xecond was refunded to your balance."
        )
        expect(job).to_contain_text("Refunded")
        expect(job.get_by_role("button", name="Cancel render")).to_have_count(0)
        screenshots.take(page, "render-failed-refunded")

        page.get_by_role("link", name="Dashboard").click()
        free = str(studio.settings.free_xeconds_on_signup)
        expect(page.locator("#balance-free")).to_have_text(free)
