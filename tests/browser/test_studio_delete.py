"""The project page's Delete button in a real Chromium: nothing goes until the customer
confirms; then the queued render is cancelled and refunded, the project is gone from the API and
the dashboard, and the dashboard says what happened."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.test_studio_flow import sign_up
from tests.fixtures.browser import LiveStudio, Screenshots
from tests.fixtures.media import make_clip

pytestmark = pytest.mark.browser


def test_delete_project_after_confirmation(
    page: Page, live_studio: LiveStudio, screenshots: Screenshots, tmp_path: Path
) -> None:
    studio = live_studio
    signup_credit = str(studio.settings.free_xeconds_on_signup)
    clip = make_clip(tmp_path / "holiday.mp4", frames=48, fps=24)  # 2 s
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    sign_up(page, studio, "deleter@example.com")
    page.get_by_label("Video clip").set_input_files(str(clip))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#estimate")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Start render").click()
    expect(page).to_have_url(re.compile(r"/studio/projects/[0-9a-f]{32}$"), timeout=15_000)
    project_id = page.url.rsplit("/", 1)[1]
    # No dispatcher runs here: the render waits in the queue, charged.
    expect(page.locator("article.job")).to_have_count(1)
    charged = page.request.get(f"{studio.base_url}/jobs").json()["items"][0]["charged_xeconds"]
    assert charged > 0

    questions: list[str] = []

    def answer(accept: bool) -> None:
        def handle(dialog: Dialog) -> None:
            questions.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        page.once("dialog", handle)

    delete = page.get_by_role("button", name="Delete project")
    answer(accept=False)
    delete.click()
    expect(delete).to_be_enabled()
    assert len(questions) == 1, questions
    assert "cannot be undone" in questions[0], questions
    assert page.request.get(f"{studio.base_url}/projects/{project_id}").status == 200
    assert page.url.endswith(project_id)

    answer(accept=True)
    delete.click()
    expect(page).to_have_url(f"{studio.base_url}/studio#history", timeout=15_000)
    expect(page.locator("#page-notice")).to_contain_text("Deleted")
    expect(page.locator("#projects")).to_contain_text("No projects yet")
    # The cancel refunded the charge: the balance is the signup credit again.
    expect(page.locator("#balance-free")).to_have_text(signup_credit)
    screenshots.take(page, "after-delete")

    gone = page.request.get(f"{studio.base_url}/projects/{project_id}")
    assert gone.status == 404
    assert "deleted by its owner" in gone.json()["detail"]
    job = page.request.get(f"{studio.base_url}/jobs").json()["items"][0]
    assert job["live_status"] == "cancelled"
    # The notice is said once: a reload of the dashboard does not repeat it.
    page.reload()
    expect(page.locator("#balance-free")).to_have_text(signup_credit)
    expect(page.locator("#page-notice")).to_be_hidden()
    assert page_errors == []
