"""Studio pages and the public share page, served by the app (TestClient; no browser)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from reframe.db.models import Account
from reframe.services import web_auth
from reframe.web.routes import STATIC_DIR, TEMPLATES_DIR
from tests.fixtures.app import ApiHarness, auth
from tests.web.test_auth import form_token, sign_up

# Anything that would make a page reach the internet: absolute or protocol-relative URLs in
# src/href/url(), @import, or font services.
_EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import|fonts\.g"""
)


def test_pages_need_a_session_and_redirect_to_login(api: ApiHarness) -> None:
    for path in ("/studio", "/studio/projects/abc"):
        resp = api.client.get(path, follow_redirects=False)
        assert resp.status_code == 303
        assert resp.headers["location"].startswith("/login?next=")
    home = api.client.get("/")
    assert home.status_code == 200
    assert 'href="/docs"' in home.text
    assert 'href="/signup"' in home.text


def test_signed_in_pages_carry_csrf_meta_and_safe_headers(api: ApiHarness) -> None:
    csrf = sign_up(api.client, "pages@example.com")
    page = api.client.get("/studio")
    assert page.status_code == 200
    assert f'<meta name="csrf-token" content="{csrf}">' in page.text
    assert 'href="/docs"' in page.text
    assert "pages@example.com" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    # Signed in, the start and sign-in pages lead straight to the studio.
    assert api.client.get("/", follow_redirects=False).headers["location"] == "/studio"
    assert api.client.get("/login", follow_redirects=False).headers["location"] == "/studio"
    assert api.client.get("/docs").status_code == 200


def test_every_asset_is_local(api: ApiHarness) -> None:
    sign_up(api.client, "assets@example.com")
    rendered = [api.client.get(p).text for p in ("/", "/studio", "/signup", "/login")]
    sources = [p.read_text() for p in [*TEMPLATES_DIR.iterdir(), *STATIC_DIR.iterdir()]]
    for text in rendered + sources:
        assert not _EXTERNAL.search(text), _EXTERNAL.search(text)
    for name, kind in (("studio.js", "javascript"), ("studio.css", "text/css")):
        resp = api.client.get(f"/static/{name}")
        assert resp.status_code == 200
        assert kind in resp.headers["content-type"]
    # The page links the assets it needs with a version that changes with their contents.
    assert re.search(r'src="/static/studio\.js\?v=[0-9a-f]{12}"', rendered[1])


def test_project_page_checks_ownership(api: ApiHarness, tmp_path: Path) -> None:
    _, key = api.create_account("owner@example.com")
    presigned = api.upload(key)
    project_id = presigned["project_id"]

    sign_up(api.client, "intruder@example.com")
    other = api.client.get(f"/studio/projects/{project_id}")
    assert other.status_code == 403
    assert "Not your project" in other.text
    missing = api.client.get("/studio/projects/nope")
    assert missing.status_code == 404

    owner = TestClient(api.app, base_url="http://testserver")
    with api.db.session() as session:
        account = session.query(Account).filter_by(email="owner@example.com").one()
        web_auth.set_password(session, account, "owner's long password")
        session.commit()
    token = form_token(owner, "/login")
    owner.post(
        "/login",
        data={
            "email": "owner@example.com",
            "password": "owner's long password",
            "csrf_token": token,
        },
    )
    mine = owner.get(f"/studio/projects/{project_id}")
    assert mine.status_code == 200
    assert f'data-project-id="{project_id}"' in mine.text


def test_share_page_shows_the_video_without_login_or_account_data(api: ApiHarness) -> None:
    _, key = api.create_account("sharer@example.com")
    presigned = api.upload(key)
    project_id = presigned["project_id"]
    # The upload becomes a verified input when it is probed (as the estimate does).
    est = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": presigned["key"], "target_fps_options": [60]},
    )
    assert est.status_code == 200, est.text
    share = api.client.post(f"/projects/{project_id}/share", headers=auth(key))
    assert share.status_code == 200, share.text
    token = share.json()["token"]

    anonymous = TestClient(api.app, base_url="http://testserver")
    page = anonymous.get(f"/s/{token}")
    assert page.status_code == 200
    assert "sharer@example.com" not in page.text
    assert "Log out" not in page.text
    assert "csrf-token" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    video = re.search(r'<video src="([^"]+)"', page.text)
    assert video, page.text
    # The URL really serves the uploaded bytes.
    url = video.group(1).replace("&amp;", "&")
    clip = anonymous.get(url)
    assert clip.status_code == 200
    assert clip.content == (api.tmp_path / "clip1.mp4").read_bytes()
    assert "not ready yet" in page.text  # no render finished: no fake "after" video

    revoked = api.client.delete(f"/projects/{project_id}/share", headers=auth(key))
    assert revoked.status_code in (200, 204)
    gone = anonymous.get(f"/s/{token}")
    assert gone.status_code == 404
    assert "revoked" in gone.text
    assert anonymous.get("/s/not-a-token").status_code == 404
