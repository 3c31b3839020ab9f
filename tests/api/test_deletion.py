"""DELETE /projects/{id} and DELETE /me (issue 13 part 6): the customer's data really goes.

Storage is checked on the backend itself (HEAD, a walk of the local root, S3's listing), never
by trusting the API's answers.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from reframe.cli import main
from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import Account, ApiKey, File, FileRole, Job, LedgerEntry, Project, Share
from reframe.db.session import make_sessionmaker
from reframe.errors import NotFound
from reframe.jobs.lifecycle import JobLifecycle
from reframe.services import ledger, uploads
from reframe.services.erasure import DELETED_KEY_PREFIX
from reframe.services.sweep import sweep
from tests.fixtures.app import ApiFactory, ApiHarness, auth, finish_with_output, path_and_query
from tests.fixtures.media import make_clip


def _job(api: ApiHarness, key: str, up: dict[str, Any], fps: int = 60) -> dict[str, Any]:
    resp = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": fps},
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _keys(api: ApiHarness, project_id: str) -> list[str]:
    """Every storage key the project's rows name (upload keys and pinned copies)."""
    with api.db.session() as s:
        rows = s.execute(
            select(File.storage_key, File.pinned_key).where(File.project_id == project_id)
        ).all()
    return [k for row in rows for k in row if k]


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _ledger_sum(api: ApiHarness, account_id: str) -> int:
    with api.db.session() as s:
        total = s.scalar(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.account_id == account_id
            )
        )
    return int(total or 0)


def test_delete_project_removes_files_bytes_and_share_links(api: ApiHarness) -> None:
    _, key = api.create_account(free=0, paid=100)
    kept = api.upload(key)  # another project of the same account stays untouched
    up = api.upload(key)
    pid = up["project_id"]
    job = _job(api, key, up)
    output_id = finish_with_output(api, job["job_id"])
    project = api.client.get(f"/projects/{pid}", headers=auth(key)).json()
    input_id = project["inputs"][0]["file_id"]
    share = api.client.post(f"/projects/{pid}/share", headers=auth(key)).json()
    downloads = {
        fid: api.client.get(f"/projects/{pid}/files/{fid}/download", headers=auth(key)).json()
        for fid in (input_id, output_id)
    }
    shared_urls = [f["url"] for f in api.client.get(f"/share/{share['token']}").json()["files"]]
    assert shared_urls
    assert all(api.client.get(u).status_code == 200 for u in downloads_urls(downloads))
    storage = api.app.state.storage
    keys = _keys(api, pid)
    assert any(storage.head(k) is not None for k in keys)
    kept_keys = _keys(api, kept["project_id"])

    resp = api.client.delete(f"/projects/{pid}", headers=auth(key))
    assert resp.status_code == 204, resp.text
    assert resp.content == b""

    # The backend holds none of the project's objects: by HEAD, and by a walk of its root.
    assert all(storage.head(k) is None for k in keys)
    left = [str(p) for p in _stored_files(storage.root)]
    assert not [p for p in left if pid in p]
    assert any(storage.head(k) is not None for k in kept_keys)

    gone = api.client.get(f"/projects/{pid}", headers=auth(key))
    assert gone.status_code == 404
    assert "deleted" in gone.json()["detail"]
    for fid in (input_id, output_id):
        dl = api.client.get(f"/projects/{pid}/files/{fid}/download", headers=auth(key))
        assert dl.status_code == 404
        assert "deleted" in dl.json()["detail"]
    for url in [*downloads_urls(downloads), *shared_urls]:
        assert api.client.get(path_and_query(url)).status_code == 404
    shared = api.client.get(f"/share/{share['token']}")
    assert shared.status_code == 404
    assert shared.json()["detail"]
    assert api.client.get(f"/s/{share['token']}").status_code == 404
    assert api.client.post(f"/projects/{pid}/share", headers=auth(key)).status_code == 404
    listed = api.client.get("/projects", headers=auth(key)).json()
    assert [p["project_id"] for p in listed["items"]] == [kept["project_id"]]
    assert listed["total"] == 1
    # The upload key cannot be priced or rendered again.
    again = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": up["key"], "target_fps_options": [60]},
    )
    assert again.status_code == 404
    # The job stays for the customer's accounting, without a way to the deleted output.
    polled = api.client.get(f"/jobs/{job['job_id']}", headers=auth(key)).json()
    assert polled["live_status"] == "done"
    assert polled["output_url"] is None

    # Rows keep nothing of the customer's video or its name.
    with api.db.session() as s:
        row = s.get(Project, pid)
        assert row is not None
        assert row.deleted_at is not None
        assert row.name == "deleted"
        files = s.scalars(select(File).where(File.project_id == pid)).all()
        assert {f.filename for f in files} == {"deleted"}
        assert all(f.probe is None and f.content_sha256 is None for f in files)
        assert s.scalar(select(func.count()).select_from(Share).where(Share.project_id == pid)) == 0
        job_row = s.get(Job, job["job_id"])
        assert job_row is not None
        assert job_row.input_key is None
        assert job_row.input_probe is None

    # Idempotency: the second DELETE finds nothing.
    second = api.client.delete(f"/projects/{pid}", headers=auth(key))
    assert second.status_code == 404
    assert "deleted" in second.json()["detail"]


def downloads_urls(downloads: dict[str, dict[str, Any]]) -> list[str]:
    return [path_and_query(d["url"]) for d in downloads.values()]


def test_delete_project_with_a_queued_job_refunds_exactly_once(api: ApiHarness) -> None:
    account_id, key = api.create_account(free=0, paid=100)
    up = api.upload(key)
    job = _job(api, key, up)
    charged = job["charged_xeconds"]
    assert job["balance"]["total_xeconds"] == 100 - charged

    assert api.client.delete(f"/projects/{up['project_id']}", headers=auth(key)).status_code == 204

    polled = api.client.get(f"/jobs/{job['job_id']}", headers=auth(key)).json()
    assert polled["live_status"] == "cancelled"
    assert polled["refunded_xeconds"] == charged
    with api.db.session() as s:
        refunds = s.scalars(
            select(LedgerEntry).where(LedgerEntry.job_id == job["job_id"], LedgerEntry.delta > 0)
        ).all()
        assert [r.delta for r in refunds] == [charged]
        balance = ledger.balance(s, account_id)
    assert balance.total == 100 == _ledger_sum(api, account_id)
    me = api.client.get("/me", headers=auth(key)).json()
    assert me["balance"]["total_xeconds"] == 100
    # Neither a cancel afterwards nor a second delete gives anything back again.
    assert api.client.post(f"/jobs/{job['job_id']}/cancel", headers=auth(key)).status_code == 409
    assert api.client.delete(f"/projects/{up['project_id']}", headers=auth(key)).status_code == 404
    assert _ledger_sum(api, account_id) == 100


def test_another_accounts_project_is_refused_and_kept(api: ApiHarness) -> None:
    _, key = api.create_account()
    _, other = api.create_account()
    theirs = api.upload(other)
    # The API's ownership rule (services.ownership, the reference's 403): refused, not deleted.
    resp = api.client.delete(f"/projects/{theirs['project_id']}", headers=auth(key))
    assert resp.status_code == 403
    assert resp.json()["detail"]
    assert (
        api.client.get(f"/projects/{theirs['project_id']}", headers=auth(other)).status_code == 200
    )
    assert api.client.delete(f"/projects/{'a' * 32}", headers=auth(key)).status_code == 404
    assert api.client.delete(f"/projects/{theirs['project_id']}").status_code == 401


def test_a_render_in_flight_cannot_register_its_output_into_a_deleted_project(
    api: ApiHarness,
) -> None:
    account_id, key = api.create_account(free=0, paid=100)
    up = api.upload(key)
    job = _job(api, key, up)
    sessions = make_sessionmaker(api.db.engine)
    life = JobLifecycle(sessions)
    claim = life.claim_next("test-worker", timedelta(minutes=5), capacity=4)
    assert claim is not None
    assert claim.job_id == job["job_id"]

    assert api.client.delete(f"/projects/{up['project_id']}", headers=auth(key)).status_code == 204

    # What the render driver does once its output is stored (reframe.jobs.driver).
    with sessions() as s:
        row = s.get(Job, job["job_id"])
        assert row is not None
        with pytest.raises(NotFound, match="deleted"):
            uploads.register_output(
                s, row, key="outputs/x/y/out.mp4", filename="out.mp4", size_bytes=10
            )
        s.rollback()
        outputs = s.scalars(
            select(File).where(File.project_id == up["project_id"], File.role == FileRole.OUTPUT)
        ).all()
        assert outputs == []
    # The late driver cannot move the job either: it was cancelled with one full refund.
    assert life.complete(job["job_id"], "f" * 32, attempt=claim.attempt) is False
    assert life.fail(job["job_id"], "late", attempt=claim.attempt).changed is False
    assert _ledger_sum(api, account_id) == 100


def test_close_account_needs_confirmation_then_deletes_everything(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    account_id, key = api.create_account("Closer@Example.com", free=0, paid=100)
    first = api.upload(key)
    second = api.upload(key)
    _job(api, key, first)  # queued: cancelled and refunded by the closure
    done = _job(api, key, second)
    finish_with_output(api, done["job_id"])
    token = api.client.post(f"/projects/{second['project_id']}/share", headers=auth(key)).json()[
        "token"
    ]
    keys = _keys(api, first["project_id"]) + _keys(api, second["project_id"])
    storage = api.app.state.storage

    missing = api.client.delete("/me", headers=auth(key))
    assert missing.status_code == 400
    assert "confirm" in missing.json()["detail"]
    wrong = api.client.delete("/me?confirm=someone@example.com", headers=auth(key))
    assert wrong.status_code == 400
    assert api.client.get("/me", headers=auth(key)).status_code == 200  # nothing happened

    closed = api.client.delete("/me?confirm=closer@example.com", headers=auth(key))
    assert closed.status_code == 204, closed.text

    refused = api.client.get("/me", headers=auth(key))
    assert refused.status_code == 401
    assert "closed" in refused.json()["detail"]
    assert api.client.delete("/me?confirm=closer@example.com", headers=auth(key)).status_code == 401
    assert api.client.get(f"/share/{token}").status_code == 404
    assert all(storage.head(k) is None for k in keys)
    assert not [p for p in _stored_files(storage.root) if account_id in str(p)]

    with api.db.session() as s:
        account = s.get(Account, account_id)
        assert account is not None
        assert account.closed_at is not None
        assert "closer" not in account.email
        assert account.email.endswith("@closed.invalid")
        assert account.password_hash is None
        assert account.webhook_secret is None
        assert all(k.revoked_at is not None for k in s.scalars(select(ApiKey)))
        projects = s.scalars(select(Project).where(Project.account_id == account_id)).all()
        assert len(projects) == 2
        assert all(p.deleted_at is not None for p in projects)
        # The ledger is kept: the charges, the one refund of the queued job, and its sum.
        reasons = sorted(e.reason.value for e in s.scalars(select(LedgerEntry)))
        assert reasons == ["grant", "job_charge", "job_charge", "job_refund"]
    assert _ledger_sum(api, account_id) == 100 - done["charged_xeconds"]

    # A new signup with the same address is a new account; the old key stays dead.
    fresh_id, fresh_key = api.create_account("closer@example.com")
    assert fresh_id != account_id
    assert api.client.get("/me", headers=auth(fresh_key)).json()["account"]["id"] == fresh_id
    assert api.client.get("/me", headers=auth(key)).status_code == 401

    # Operators see it as closed.
    monkeypatch.setenv("REFRAME_DATABASE_URL", api.db.url)
    monkeypatch.setenv("REFRAME_DATA_DIR", str(api.tmp_path / "var"))
    capsys.readouterr()
    assert main(["accounts", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[account_id]["closed_at"]
    assert rows[account_id]["state"].startswith("closed")
    assert rows[fresh_id]["closed_at"] is None
    assert main(["accounts", "list"]) == 0
    assert "closed" in capsys.readouterr().out


def test_deletion_endpoints_are_documented(api: ApiHarness) -> None:
    schema = api.client.get("/openapi.json").json()
    project = schema["paths"]["/projects/{project_id}"]["delete"]
    me = schema["paths"]["/me"]["delete"]
    for operation in (project, me):
        assert operation["description"]
        assert "204" in operation["responses"]
        assert "401" in operation["responses"]
    assert "404" in project["responses"]
    assert "400" in me["responses"]
    assert [p["name"] for p in me["parameters"]] == ["confirm"]


@pytest.mark.s3
def test_delete_project_on_s3_removes_every_object(
    api_factory: ApiFactory, s3_settings: Settings, tmp_path: Path
) -> None:
    api = api_factory(
        storage_backend="s3",
        s3_bucket=s3_settings.s3_bucket,
        s3_endpoint_url=s3_settings.s3_endpoint_url,
        s3_region=s3_settings.s3_region,
        s3_access_key_id=s3_settings.s3_access_key_id,
        s3_secret_access_key=s3_settings.s3_secret_access_key,
    )
    storage = api.app.state.storage
    storage.ensure_bucket()
    _, key = api.create_account(free=0, paid=100)
    clip = make_clip(tmp_path / "s3clip.mp4", frames=24, fps=24)
    presigned = api.presign(key, clip.name)
    put = httpx.put(
        presigned["upload_url"], content=clip.read_bytes(), headers=presigned["headers"]
    )
    assert put.status_code == 200, put.text
    job = _job(api, key, presigned)
    finish_with_output(api, job["job_id"])
    bucket = storage.bucket

    def objects() -> list[str]:
        listing = storage.client.list_objects_v2(Bucket=bucket)
        return [o["Key"] for o in listing.get("Contents", [])]

    assert objects()  # the pinned input and the output
    pid = presigned["project_id"]
    assert api.client.delete(f"/projects/{pid}", headers=auth(key)).status_code == 204
    assert objects() == []

    # An S3 upload URL cannot be revoked: a late PUT puts bytes back under the upload key,
    # which the deletion kept for the sweeper until that URL has expired.
    late = httpx.put(presigned["upload_url"], content=b"late", headers=presigned["headers"])
    assert late.status_code == 200
    assert objects() == [presigned["key"]]
    sessions = make_sessionmaker(api.db.engine)
    later = utcnow() + timedelta(seconds=api.settings.upload_url_ttl_sec + 1)
    report = sweep(sessions, storage, api.settings, now=later)
    assert len(report.deleted) == 1
    assert objects() == []
    with sessions() as s:
        names = s.scalars(select(File.storage_key).where(File.project_id == pid)).all()
    assert names
    assert all(n.startswith(DELETED_KEY_PREFIX) for n in names)
    assert sweep(sessions, storage, api.settings, now=later).deleted == []


def test_deletes_spend_the_write_bucket(api_factory: ApiFactory) -> None:
    api = api_factory(rate_limit_write_per_sec=0.01, rate_limit_write_burst=3)
    _, key = api.create_account()
    codes = [
        api.client.delete(f"/projects/{'c' * 32}", headers=auth(key)).status_code for _ in range(4)
    ]
    assert codes == [404, 404, 404, 429]
    limited = api.client.delete("/me?confirm=x@example.com", headers=auth(key))
    assert limited.status_code == 429
    assert limited.json()["detail"]
    assert api.client.get("/me", headers=auth(key)).status_code == 200  # reads are not spent


def test_an_upload_url_of_a_deleted_project_takes_no_bytes(api: ApiHarness) -> None:
    _, key = api.create_account()
    presigned = api.presign(key)  # handed out, nothing sent yet
    assert (
        api.client.delete(f"/projects/{presigned['project_id']}", headers=auth(key)).status_code
        == 204
    )
    clip = make_clip(api.tmp_path / "late.mp4")
    late = api.client.request(
        presigned["method"],
        presigned["upload_url"],
        content=clip.read_bytes(),
        headers=presigned["headers"],
    )
    assert late.status_code == 404
    assert "deleted" in late.json()["detail"]
    assert api.app.state.storage.head(presigned["key"]) is None
    assert not [p for p in _stored_files(api.app.state.storage.root) if p.suffix == ".mp4"]
