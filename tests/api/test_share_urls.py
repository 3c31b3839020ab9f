"""Revoking a share link also kills the video URLs it already handed out.

Before: `GET /share/{token}` and the page `/s/{token}` minted storage URLs valid for
REFRAME_DOWNLOAD_URL_TTL_SEC (an hour), so a revoked link's videos stayed downloadable by
anyone who had opened it, for up to an hour. Now those URLs carry the share they were minted
for (checked on every request by the local backend) and expire within
REFRAME_SHARE_URL_TTL_SEC (minutes), which is all S3 can enforce.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from tests.fixtures.app import (
    ApiFactory,
    ApiHarness,
    auth,
    finish_with_output,
    path_and_query,
    storage_urls_in_page,
)


def _shared_project(api: ApiHarness) -> tuple[str, str, str]:
    """(owner key, project id, live share token) of a project with an input and an output."""
    _, key = api.create_account(free=100)
    up = api.upload(key, frames=24, fps=24)
    job = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60},
    )
    assert job.status_code == 200, job.text
    finish_with_output(api, job.json()["job_id"])
    share = api.client.post(f"/projects/{up['project_id']}/share", headers=auth(key))
    assert share.status_code == 200, share.text
    return key, up["project_id"], share.json()["token"]


def _share_urls(api: ApiHarness, token: str) -> list[str]:
    urls = [f["url"] for f in api.client.get(f"/share/{token}").json()["files"]]
    urls += storage_urls_in_page(api.client.get(f"/s/{token}").text)
    assert len(urls) >= 4  # input + output in the JSON view, before/after/download on the page
    return urls


def test_revoking_a_share_stops_the_urls_it_already_minted(api: ApiHarness) -> None:
    key, project_id, token = _shared_project(api)
    urls = _share_urls(api, token)
    for url in urls:
        assert api.client.get(path_and_query(url)).status_code == 200, url

    assert api.client.delete(f"/projects/{project_id}/share", headers=auth(key)).status_code == 204

    for url in urls:
        resp = api.client.get(path_and_query(url))
        assert resp.status_code == 403, (url, resp.status_code)
        assert "revoked" in resp.json()["detail"]
        assert api.client.head(path_and_query(url)).status_code == 403
    # The owner's own download links do not depend on the share.
    project = api.client.get(f"/projects/{project_id}", headers=auth(key)).json()
    file_id = project["outputs"][0]["file_id"]
    dl = api.client.get(f"/projects/{project_id}/files/{file_id}/download", headers=auth(key))
    assert api.client.get(path_and_query(dl.json()["url"])).status_code == 200


def test_a_new_share_does_not_revive_the_old_ones_urls(api: ApiHarness) -> None:
    key, project_id, token = _shared_project(api)
    urls = _share_urls(api, token)
    api.client.delete(f"/projects/{project_id}/share", headers=auth(key))
    fresh = api.client.post(f"/projects/{project_id}/share", headers=auth(key)).json()["token"]
    assert fresh != token
    for url in urls:
        assert api.client.get(path_and_query(url)).status_code == 403, url
    for url in _share_urls(api, fresh):
        assert api.client.get(path_and_query(url)).status_code == 200, url


def test_share_urls_expire_within_minutes(api_factory: ApiFactory) -> None:
    api = api_factory(share_url_ttl_sec=240, download_url_ttl_sec=3600)
    _, _, token = _shared_project(api)
    now = time.time()
    for url in _share_urls(api, token):
        expires = int(parse_qs(urlsplit(url).query)["expires"][0])
        assert expires <= now + 240 + 5, url
