"""Retention (issue 13 part 6): inputs and outputs expire after REFRAME_RETENTION_DAYS, the
expiry is shown, the sweeper deletes the bytes, and the API answers 410 afterwards; inputs of
jobs still waiting or running are never swept."""

from __future__ import annotations

from datetime import datetime, timedelta

from reframe.db.base import utcnow
from reframe.db.models import File
from reframe.db.session import make_sessionmaker
from reframe.services.sweep import sweep
from tests.fixtures.app import ApiFactory, ApiHarness, auth, finish_with_output


def _start(api: ApiHarness, key: str) -> tuple[dict[str, str], str]:
    up = api.upload(key, frames=24, fps=24)
    resp = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60},
    )
    assert resp.status_code in (200, 201, 202), resp.text
    return up, resp.json()["job_id"]


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_expired_files_are_deleted_and_answer_410(api_factory: ApiFactory) -> None:
    api = api_factory(retention_days=7)
    _, key = api.create_account(free=0, paid=100)
    done_up, done_job = _start(api, key)
    output_id = finish_with_output(api, done_job)
    waiting_up, waiting_job = _start(api, key)

    project = api.client.get(f"/projects/{done_up['project_id']}", headers=auth(key)).json()
    [inp], [out] = project["inputs"], project["outputs"]
    for row in (inp, out):
        expiry = _when(row["expires_at"]) - _when(row["created_at"])
        assert abs(expiry - timedelta(days=7)) < timedelta(seconds=1)
    download = api.client.get(
        f"/projects/{done_up['project_id']}/files/{output_id}/download", headers=auth(key)
    ).json()
    assert _when(download["file_expires_at"]) == _when(out["expires_at"])
    listed = api.client.get("/projects", headers=auth(key)).json()["items"]
    assert all(f["expires_at"] for p in listed for f in p["inputs"] + p["outputs"])

    storage = api.app.state.storage
    sessions = make_sessionmaker(api.db.engine)
    # A verified input's bytes live in its pinned copy, not under the upload key.
    with sessions() as s:
        stored = {f.storage_key: f.object_key for f in s.query(File)}
    waiting_bytes, done_bytes = stored[waiting_up["key"]], stored[done_up["key"]]
    assert storage.head(done_bytes) is not None
    report = sweep(sessions, storage, api.settings, now=utcnow() + timedelta(days=8))
    assert sorted(report.retained) == sorted([inp["file_id"], output_id])
    # The queued job's input stays, bytes and all, whatever its age.
    assert storage.head(waiting_bytes) is not None
    assert storage.head(done_bytes) is None
    assert storage.head(done_up["key"]) is None
    assert storage.head(out["key"]) is None

    for file_id in (inp["file_id"], output_id):
        resp = api.client.get(
            f"/projects/{done_up['project_id']}/files/{file_id}/download", headers=auth(key)
        )
        assert resp.status_code == 410, resp.text
        assert "retention" in resp.json()["detail"]
    job = api.client.get(f"/jobs/{done_job}", headers=auth(key)).json()
    assert job["output_url"] is None
    resp = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": done_up["key"], "target_fps_options": [60]},
    )
    assert resp.status_code == 410, resp.text
    project = api.client.get(f"/projects/{done_up['project_id']}", headers=auth(key)).json()
    assert {f["status"] for f in project["inputs"] + project["outputs"]} == {"expired"}
    assert all(f["expires_at"] is None for f in project["inputs"] + project["outputs"])
    assert waiting_job
