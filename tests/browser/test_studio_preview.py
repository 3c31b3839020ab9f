"""The studio's Preview button in a real Chromium: priced before it is pressed, free within the
day's allowance, and shown as a preview on the project page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_studio_flow import sign_up
from tests.fixtures.browser import LiveStudio, Screenshots
from tests.fixtures.media import make_clip

pytestmark = pytest.mark.browser


def test_preview_before_the_full_render(
    page: Page, live_studio: LiveStudio, screenshots: Screenshots, tmp_path: Path
) -> None:
    studio = live_studio
    clip = make_clip(tmp_path / "walk.mp4", frames=96, fps=24, width=128, height=96)  # 4 s
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.on(
        "response", lambda r: page_errors.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )

    sign_up(page, studio, "previewer@example.com")
    expect(page.locator("#pricing-limits")).to_contain_text("previews of each UTC day are free")
    page.get_by_label("Video clip").set_input_files(str(clip))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#estimate")).to_be_visible(timeout=30000)
    preview = page.get_by_role("button", name="Preview first 3 s")
    expect(preview).to_be_enabled()
    expect(page.locator("#preview-hint")).to_contain_text("free (3 free previews left today)")
    screenshots.take(page, "preview-offered")

    page.get_by_label(re.compile("^120 fps")).check()
    preview.click()
    expect(page).to_have_url(re.compile(r"/studio/projects/[0-9a-f]{32}$"), timeout=15000)
    job = page.locator("article.job")
    expect(job).to_have_count(1)
    expect(job.locator("h3")).to_contain_text("120 fps preview (first 3 s)")
    expect(job).to_contain_text("0 xeconds (free)")
    screenshots.take(page, "preview-accepted")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#balance-free")).to_have_text(str(studio.settings.free_xeconds_on_signup))
    expect(page.locator("#projects")).to_contain_text("120 fps preview")
    assert page_errors == []
