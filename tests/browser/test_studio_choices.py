"""The studio's render form in a real Chromium: output file choices and slow motion reach
POST /jobs, and the project page shows what the job will deliver."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_studio_flow import sign_up
from tests.fixtures.browser import LiveStudio, Screenshots
from tests.fixtures.media import make_clip

pytestmark = pytest.mark.browser


def test_render_form_sends_output_choices_and_slow_motion(
    page: Page, live_studio: LiveStudio, screenshots: Screenshots, tmp_path: Path
) -> None:
    studio = live_studio
    clip = make_clip(tmp_path / "clip.mp4", frames=48, fps=24, audio=True)  # 2 s
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    sign_up(page, studio, "choices@example.com")
    page.get_by_role("button", name="Generate API key").click()
    key_input = page.get_by_label("Your new API key")
    expect(key_input).to_have_value(re.compile(r"^rf_live_"))
    key = key_input.input_value()

    page.get_by_label("Video clip").set_input_files(str(clip))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#estimate")).to_be_visible(timeout=30_000)

    # ProRes is only offered once the container is MOV.
    prores = page.locator('#output-codec option[value="prores"]')
    expect(prores).to_be_disabled()
    page.get_by_label("Container").select_option("mov")
    expect(prores).to_be_enabled()
    page.get_by_label("Codec").select_option("prores")
    page.get_by_label("Quality").select_option("visually_lossless")
    page.get_by_label("Play back at").select_option("30")
    page.get_by_label(re.compile("^120 fps")).check()
    screenshots.take(page, "choices")
    page.get_by_role("button", name="Start render").click()
    expect(page).to_have_url(re.compile(r"/studio/projects/[0-9a-f]{32}$"), timeout=15_000)

    job = page.locator("article.job")
    expect(job).to_contain_text("MOV, prores, ProRes 4444, no sound")
    expect(job).to_contain_text("30 fps (slow motion, no sound)")
    screenshots.take(page, "project-with-choices")

    listed = page.request.get(
        f"{studio.base_url}/jobs", headers={"Authorization": f"Bearer {key}"}
    ).json()["items"]
    assert len(listed) == 1
    assert listed[0]["target_fps"] == 120
    assert listed[0]["playback_fps"] == 30
    assert listed[0]["output"]["codec"] == "prores"
    assert listed[0]["output"]["prores_profile"] == "4444"
    # Slow motion is priced by the output frame rate: 2 s in the slo-mo band.
    assert listed[0]["charged_xeconds"] == 4
    assert errors == []
