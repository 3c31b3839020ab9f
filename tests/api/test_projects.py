"""GET /projects, GET /projects/{id}, downloads, share links and GET /share/{token}."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.app import ApiHarness, auth, finish_with_output
from tests.fixtures.media import make_clip


def _job(api: ApiHarness, key: str, up: dict[str, Any], fps: int = 60) -> str:
    resp = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": fps},
    )
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def _get(api: ApiHarness, url: str) -> httpx.Response:
    return api.client.get(url)


def test_history_lists_inputs_outputs_and_jobs(api: ApiHarness) -> None:
    _, key = api.create_account(free=100)
    _, other = api.create_account()
    first = api.upload(key)
    second = api.upload(key)
    api.upload(other)
    job_id = _job(api, key, second)
    output_id = finish_with_output(api, job_id)

    page = api.client.get("/projects", headers=auth(key)).json()
    assert page["total"] == 2
    assert [p["project_id"] for p in page["items"]] == [second["project_id"], first["project_id"]]
    latest = page["items"][0]
    assert [f["key"] for f in latest["inputs"]] == [second["key"]]
    assert [f["file_id"] for f in latest["outputs"]] == [output_id]
    assert [(j["job_id"], j["live_status"]) for j in latest["jobs"]] == [(job_id, "done")]
    assert latest["inputs"][0]["status"] == "ready"
    assert latest["inputs"][0]["fps"] == 24

    one = api.client.get(f"/projects/{second['project_id']}", headers=auth(key))
    assert one.status_code == 200
    assert one.json() == latest
    assert (
        api.client.get("/projects?limit=1&offset=1", headers=auth(key)).json()["items"][0][
            "project_id"
        ]
        == first["project_id"]
    )


def test_done_job_has_a_working_output_url(api: ApiHarness) -> None:
    _, key = api.create_account()
    up = api.upload(key)
    job_id = _job(api, key, up)
    finish_with_output(api, job_id)
    body = api.client.get(f"/jobs/{job_id}", headers=auth(key)).json()
    assert body["live_status"] == "done"
    assert body["output_url"]
    got = _get(api, body["output_url"])
    assert got.status_code == 200
    assert got.content == (api.tmp_path / "out.mp4").read_bytes()


def test_project_ownership(api: ApiHarness) -> None:
    _, key = api.create_account()
    _, other = api.create_account()
    theirs = api.upload(other)
    assert api.client.get(f"/projects/{theirs['project_id']}", headers=auth(key)).status_code == 403
    assert api.client.get(f"/projects/{'a' * 32}", headers=auth(key)).status_code == 404
    assert api.client.get("/projects").status_code == 401


def test_download_gives_a_fresh_url_to_the_bytes(api: ApiHarness) -> None:
    _, key = api.create_account()
    _, other = api.create_account()
    clip = make_clip(api.tmp_path / "dl.mp4", frames=12)
    up = api.upload(key, clip)
    project = api.client.get(f"/projects/{up['project_id']}", headers=auth(key)).json()
    file_id = project["inputs"][0]["file_id"]
    url = f"/projects/{up['project_id']}/files/{file_id}/download"
    first = api.client.get(url, headers=auth(key))
    assert first.status_code == 200, first.text
    assert first.json()["filename"] == "dl.mp4"
    assert first.json()["expires_at"]
    assert _get(api, first.json()["url"]).content == clip.read_bytes()

    assert api.client.get(url, headers=auth(other)).status_code == 403
    missing = f"/projects/{up['project_id']}/files/{'b' * 32}/download"
    assert api.client.get(missing, headers=auth(key)).status_code == 404
    pending = api.presign(key)
    pending_file = api.client.get(f"/projects/{pending['project_id']}", headers=auth(key)).json()[
        "inputs"
    ][0]["file_id"]
    resp = api.client.get(
        f"/projects/{pending['project_id']}/files/{pending_file}/download", headers=auth(key)
    )
    assert resp.status_code == 404
    assert "no stored bytes" in resp.json()["detail"]


def test_share_link_lifecycle(api: ApiHarness) -> None:
    _, key = api.create_account("owner@example.com")
    _, other = api.create_account()
    up = api.upload(key)
    job_id = _job(api, key, up)
    finish_with_output(api, job_id)
    pid = up["project_id"]

    created = api.client.post(f"/projects/{pid}/share", headers=auth(key))
    assert created.status_code == 200
    share = created.json()
    assert len(share["token"]) >= 22  # >= 128 bits in url-safe base64
    assert share["url"].endswith(f"/share/{share['token']}")
    # Next to the JSON view, the page people open: the studio's /s/{token}, same token.
    base = api.settings.public_base_url.rstrip("/")
    assert share["page_url"] == f"{base}/s/{share['token']}"
    again = api.client.post(f"/projects/{pid}/share", headers=auth(key)).json()
    assert again["token"] == share["token"]
    project = api.client.get(f"/projects/{pid}", headers=auth(key)).json()
    assert (project["share_url"], project["share_page_url"]) == (share["url"], share["page_url"])
    listed = api.client.get("/projects", headers=auth(key)).json()["items"]
    assert [p["share_page_url"] for p in listed] == [share["page_url"]]

    public = api.client.get(f"/share/{share['token']}")  # no key
    assert public.status_code == 200
    body = public.json()
    assert {f["role"] for f in body["files"]} == {"input", "output"}
    assert "owner@example.com" not in public.text
    assert "account" not in public.text
    for f in body["files"]:
        assert _get(api, f["url"]).status_code == 200

    assert api.client.post(f"/projects/{pid}/share", headers=auth(other)).status_code == 403
    assert api.client.delete(f"/projects/{pid}/share", headers=auth(other)).status_code == 403
    assert api.client.delete(f"/projects/{pid}/share", headers=auth(key)).status_code == 204
    assert api.client.get(f"/share/{share['token']}").status_code == 404
    revoked = api.client.get(f"/projects/{pid}", headers=auth(key)).json()
    assert (revoked["share_url"], revoked["share_page_url"]) == (None, None)
    assert api.client.delete(f"/projects/{pid}/share", headers=auth(key)).status_code == 404
    fresh = api.client.post(f"/projects/{pid}/share", headers=auth(key)).json()
    assert fresh["token"] != share["token"]
    assert api.client.get("/share/not-a-real-token").status_code == 404
    assert api.client.post(f"/projects/{'c' * 32}/share", headers=auth(key)).status_code == 404
