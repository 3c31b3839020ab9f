"""Stored XSS on the API's origin: no byte a client uploads is ever served as a page.

The attack: presign `evil.html` (a video content type is all presign checked), PUT a real
clip, let estimate-video verify it, share the project, then PUT HTML to the same upload URL
(it stays writable for its lifetime). The local backend served `/storage/...evil.html` as
`text/html`, inline, on the API's own origin, to anyone holding the share page: the page's
scripts then run with the origin's cookies (the studio session) and can drive the API.

Every URL the API and the share page mint is fetched here, and none may be a document type,
sniffable, or shown outside a sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from reframe.services.uploads import UPLOAD_EXTENSIONS
from tests.fixtures.app import (
    ApiHarness,
    auth,
    finish_with_output,
    path_and_query,
    storage_urls_in_page,
)
from tests.fixtures.media import make_clip

HTML = b"<!doctype html><script>fetch('/me/api-key',{method:'POST'})</script>"


def assert_inert(resp: httpx.Response, url: str) -> None:
    """A response a browser can only download or play, never run."""
    assert resp.status_code in (200, 206), (url, resp.status_code, resp.text[:200])
    media = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    assert media.startswith("video/") or media == "application/octet-stream", (url, media)
    assert resp.headers.get("x-content-type-options") == "nosniff", url
    assert "sandbox" in resp.headers.get("content-security-policy", ""), url
    disposition = resp.headers.get("content-disposition", "")
    assert disposition.split(";", 1)[0] in ("attachment", "inline"), (url, disposition)


def _minted_urls(api: ApiHarness, key: str, project_id: str, token: str, job_id: str) -> list[str]:
    urls = []
    shared = api.client.get(f"/share/{token}")
    assert shared.status_code == 200, shared.text
    urls += [f["url"] for f in shared.json()["files"]]
    page = api.client.get(f"/s/{token}")
    assert page.status_code == 200
    in_page = storage_urls_in_page(page.text)
    assert in_page, "the share page shows no video"
    urls += in_page
    project = api.client.get(f"/projects/{project_id}", headers=auth(key)).json()
    for f in project["inputs"] + project["outputs"]:
        dl = api.client.get(
            f"/projects/{project_id}/files/{f['file_id']}/download", headers=auth(key)
        )
        assert dl.status_code == 200, dl.text
        urls.append(dl.json()["url"])
    job = api.client.get(f"/jobs/{job_id}", headers=auth(key)).json()
    urls.append(job["output_url"])
    return urls


def _put_and_verify(
    api: ApiHarness, key: str, presign: httpx.Response, tmp_path: Path
) -> dict[str, Any]:
    """PUT a real clip to a presigned upload and have estimate-video verify it."""
    assert presign.status_code == 200, presign.text
    up: dict[str, Any] = presign.json()
    api.put(up, make_clip(tmp_path / "real.mp4", frames=24, fps=24))
    verified = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": up["key"], "target_fps_options": [60]},
    )
    assert verified.status_code == 200, verified.text
    return up


@pytest.mark.parametrize("filename", ["evil.html", "evil.svg", "clip.mp4"])
def test_the_share_attack_chain_never_serves_a_page(
    api: ApiHarness, tmp_path: Path, filename: str
) -> None:
    _, key = api.create_account(free=100)
    presign = api.client.post(
        "/upload/presign",
        headers=auth(key),
        json={"filename": filename, "content_type": "video/mp4"},
    )
    if presign.status_code == 400:
        # Refused at the door, with what is allowed (test_presign_refuses_... requires it for
        # these names); had it been accepted, the rest of the chain must still hold.
        assert ".mp4" in presign.json()["detail"]
        return
    up = _put_and_verify(api, key, presign, tmp_path)
    job = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60},
    )
    assert job.status_code == 200, job.text
    job_id = job.json()["job_id"]
    finish_with_output(api, job_id)
    token = api.client.post(f"/projects/{up['project_id']}/share", headers=auth(key)).json()[
        "token"
    ]

    # The swap: HTML bytes under the verified key (refusing the PUT is a fine answer too).
    api.client.put(path_and_query(up["upload_url"]), content=HTML, headers=up["headers"])

    for url in _minted_urls(api, key, up["project_id"], token, job_id):
        for method in ("GET", "HEAD"):
            assert_inert(api.client.request(method, path_and_query(url)), f"{method} {url}")


@pytest.mark.parametrize(
    "filename",
    ["page.html", "page.htm", "x.xhtml", "x.svg", "x.js", "x.xml", "clip", "clip.mp4.html", ".mp4"],
)
def test_presign_refuses_names_that_are_not_videos(api: ApiHarness, filename: str) -> None:
    _, key = api.create_account()
    resp = api.client.post(
        "/upload/presign",
        headers=auth(key),
        json={"filename": filename, "content_type": "video/mp4"},
    )
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert "filename" in detail
    for ext in (".mp4", ".mov", ".mkv", ".webm"):
        assert ext in detail  # says what would be accepted


@pytest.mark.parametrize("ext", sorted(UPLOAD_EXTENSIONS))
def test_presign_accepts_every_listed_video_extension(api: ApiHarness, ext: str) -> None:
    _, key = api.create_account()
    up = api.presign(key, f"Holiday Clip{ext.upper()}")
    assert up["key"].lower().endswith(ext)


def test_the_stored_type_is_the_verified_one_not_the_declared_one(
    api: ApiHarness, tmp_path: Path
) -> None:
    _, key = api.create_account()
    presign = api.client.post(
        "/upload/presign",
        headers=auth(key),
        json={"filename": "clip.mp4", "content_type": "video/x-anything"},
    )
    up = _put_and_verify(api, key, presign, tmp_path)
    project = api.client.get(f"/projects/{up['project_id']}", headers=auth(key)).json()
    [upload] = project["inputs"]
    assert upload["content_type"] == "video/mp4"
    dl = api.client.get(
        f"/projects/{up['project_id']}/files/{upload['file_id']}/download", headers=auth(key)
    ).json()
    got = api.client.get(path_and_query(dl["url"]))
    assert_inert(got, dl["url"])
    assert got.headers["content-type"] == "video/mp4"
    assert got.headers["content-disposition"].startswith("attachment;")
