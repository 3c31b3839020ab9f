"""The studio in a real Chromium: sign up, key, upload with progress, estimate, render, share,
cancel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures.browser import LiveStudio, Screenshots
from tests.fixtures.media import make_clip

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"


def sign_up(page: Page, studio: LiveStudio, email: str) -> None:
    page.goto(f"{studio.base_url}/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(f"{studio.base_url}/studio")
    # The balance arrives from GET /me: the signup gift of free xeconds.
    expect(page.locator("#balance-free")).to_have_text(str(studio.settings.free_xeconds_on_signup))


def throttle_uploads(page: Page, bytes_per_sec: int) -> None:
    # On loopback an upload finishes before the first progress event is painted; slowing the
    # network through the DevTools protocol makes the progress bar observable.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_sec,
        },
    )


def test_sign_up_key_upload_estimate_render_share(
    page: Page, browser: Browser, live_studio: LiveStudio, screenshots: Screenshots, tmp_path: Path
) -> None:
    studio = live_studio
    # 2 s of 256x144 at 24 fps: small enough to render on a CPU, big enough (tens of KB) that a
    # throttled upload takes a few seconds.
    clip = make_clip(tmp_path / "walk.mp4", frames=48, fps=24, width=256, height=144, audio=True)
    clip_bytes = clip.stat().st_size

    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.on(
        "response", lambda r: page_errors.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.on("console", lambda msg: page_errors.append(msg.text) if msg.type == "error" else None)

    sign_up(page, studio, "studio-user@example.com")
    expect(page.locator("#key-state")).to_contain_text("Not generated yet")
    expect(page.locator("#pricing-bands tr")).to_have_count(3)
    screenshots.take(page, "dashboard-after-signup")

    # API key: shown once, with a copy button and the warning about the old key.
    page.get_by_role("button", name="Generate API key").click()
    key_input = page.get_by_label("Your new API key")
    expect(key_input).to_have_value(re.compile(r"^rf_live_\S{40,}$"))
    first_key = key_input.input_value()
    expect(page.locator("#key-warning")).to_contain_text("stops working")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#key-copy-status")).to_contain_text("Copied")
    screenshots.take(page, "api-key-shown-once")
    # The key works against the API with a bearer header, like any client's.
    me = page.request.get(f"{studio.base_url}/me", headers={"Authorization": f"Bearer {first_key}"})
    assert me.status == 200
    assert me.json()["account"]["email"] == "studio-user@example.com"

    # Rotating asks for a second, explicit click, then the old key stops working.
    page.get_by_role("button", name="Replace API key").click()
    page.get_by_role("button", name=re.compile("old key stops working")).click()
    expect(key_input).not_to_have_value(first_key)
    expect(key_input).to_have_value(re.compile(r"^rf_live_"))
    old = page.request.get(
        f"{studio.base_url}/me", headers={"Authorization": f"Bearer {first_key}"}
    )
    assert old.status == 401

    # Upload through presign + XHR PUT, throttled so the progress bar is seen mid-way.
    throttle_uploads(page, max(4096, clip_bytes // 4))
    page.get_by_label("Video clip").set_input_files(str(clip))
    page.get_by_role("button", name="Upload").click()
    progress = page.locator("#upload-progress")
    page.wait_for_function(
        "() => { const v = document.getElementById('upload-progress').value;"
        " return v > 0 && v < 100; }",
        timeout=15000,
    )
    mid = float(progress.get_attribute("value") or "0")
    assert 0 < mid < 100
    screenshots.take(page, "upload-in-progress")

    # Probe and prices for 60/120/240.
    expect(page.locator("#estimate")).to_be_visible(timeout=30000)
    expect(progress).to_have_attribute("value", "100")
    expect(page.locator("#probe-fps")).to_have_text("24 fps")
    expect(page.locator("#probe-resolution")).to_have_text("256 × 144")
    expect(page.locator("#probe-duration")).to_have_text("2.00 s")
    option60 = page.locator('.option[data-fps="60"]')
    expect(option60).to_contain_text("2 xeconds")
    # Bands read as the pricing table names them, not by their API names ("slomo").
    expect(option60).to_contain_text("Smooth band")
    expect(page.locator('.option[data-fps="120"]')).to_contain_text("Slo-mo band")
    expect(page.get_by_label(re.compile("^60 fps"))).to_be_enabled()
    expect(page.get_by_label(re.compile("^120 fps"))).to_be_enabled()
    # 240 fps costs 2 s x 4 = 8 xeconds, within the 30 free: everything is allowed here.
    expect(page.locator('.option[data-fps="240"]')).to_contain_text("8 xeconds")
    screenshots.take(page, "estimate")

    # Start the render: it is accepted, charged, and its live status appears on the project page.
    page.get_by_label(re.compile("^60 fps")).check()
    page.get_by_role("button", name="Start render").click()
    expect(page).to_have_url(re.compile(r"/studio/projects/[0-9a-f]{32}$"), timeout=15000)
    job = page.locator("article.job")
    expect(job).to_have_count(1)
    expect(job.locator(".badge")).to_have_attribute(
        "data-status", re.compile("^(queued|no_workers|cold_start|processing|done)$")
    )
    expect(job).to_contain_text("2 xeconds (free)")
    screenshots.take(page, "render-accepted")

    # Back on the dashboard the charge shows in the balance and the project in the history.
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#balance-free")).to_have_text("28")
    expect(page.locator("#projects tbody tr")).to_have_count(1)
    expect(page.locator("#projects")).to_contain_text("walk.mp4")
    screenshots.take(page, "history")
    page.locator("#projects tbody a").first.click()

    # Share link: created in the studio, opened in a fresh context with no login.
    page.get_by_role("button", name="Create share link").click()
    share_input = page.get_by_label("Review link")
    expect(share_input).to_have_value(
        re.compile(rf"^{re.escape(studio.base_url)}/s/[A-Za-z0-9_-]{{32,}}$")
    )
    share_url = share_input.input_value()
    screenshots.take(page, "share-created")

    anonymous = browser.new_context()
    try:
        viewer = anonymous.new_page()
        viewer.goto(share_url)
        expect(viewer.get_by_role("heading", level=1)).to_have_text("walk")
        body = viewer.locator("body").inner_text()
        assert "studio-user@example.com" not in body
        assert "Log out" not in body
        expect(viewer.locator("video").first).to_be_visible()
        # The video is served inline, sandboxed and nosniff (origin safety): it still plays.
        ready = viewer.locator("video").first.evaluate(
            """video => new Promise(done => {
                if (video.readyState >= 1) { done(video.readyState); return; }
                video.addEventListener("loadedmetadata", () => done(video.readyState));
                video.addEventListener("error", () => done(-1));
                video.load();
            })"""
        )
        assert ready >= 1, "the shared video did not load in the browser"
        screenshots.take(viewer, "share-page-logged-out")
    finally:
        anonymous.close()

    # Revoking makes the link stop working.
    page.get_by_role("button", name="Revoke link").click()
    expect(page.locator("#share-status")).to_contain_text("revoked")
    gone = page.request.get(share_url)
    assert gone.status == 404

    # No dispatcher runs here, so the render is still waiting: cancelling it refunds it all.
    job = page.locator("article.job")
    expect(job).to_have_attribute("data-status", re.compile("^(queued|no_workers)$"))
    expect(job.locator("[data-role=cancel-status]")).to_have_text(
        "Cancelling now refunds 2 xeconds."
    )
    job.get_by_role("button", name="Cancel render").click()
    expect(job).to_have_attribute("data-status", "cancelled")
    expect(job.locator("[data-role=refund]")).to_have_text(
        "2 xeconds were refunded to your balance."
    )
    expect(job.get_by_role("button", name="Cancel render")).to_have_count(0)
    screenshots.take(page, "render-cancelled")

    # Phone width: nothing overflows sideways, and the keyboard reaches the main actions.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{studio.base_url}/studio")
    expect(page.locator("#balance-free")).to_have_text("30")
    # The credit history, newest first: the cancel's refund, the charge, the signup gift.
    rows = page.locator("#ledger-entries tbody tr")
    expect(rows).to_have_count(3)
    for row, (kind, amount) in enumerate((("cancel", "+2"), ("charge", "-2"), ("signup", "+30"))):
        expect(rows.nth(row)).to_have_attribute("data-kind", kind)
        expect(rows.nth(row).locator("[data-role=amount]")).to_have_text(amount)
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    screenshots.take(page, "dashboard-phone-width")
    assert page_errors == []
