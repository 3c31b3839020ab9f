"""The sweeper (issue 12 item 8): abandoned uploads, orphaned `.part` files and S3 multipart
uploads are gone after a sweep, on the local backend and on a real loopback S3 server."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

from sqlalchemy import update

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import File, FileStatus
from reframe.db.session import make_sessionmaker
from reframe.jobs.dispatcher import run_loop
from reframe.services import accounts, uploads
from reframe.services.sweep import sweep
from reframe.storage.local import LocalStorage
from reframe.storage.s3 import S3Storage
from tests.fixtures.app import ApiFactory, auth
from tests.fixtures.db import TestDatabase


def _age(db: TestDatabase, file_id: str, seconds: float) -> None:
    with db.session() as s:
        s.execute(
            update(File)
            .where(File.id == file_id)
            .values(created_at=utcnow() - timedelta(seconds=seconds))
        )
        s.commit()


def _file(db: TestDatabase, key: str) -> File:
    with db.session() as s:
        file = s.query(File).filter_by(storage_key=key).one()
        s.expunge(file)
        return file


def test_local_sweep_removes_abandoned_uploads_and_orphaned_parts(
    api_factory: ApiFactory,
) -> None:
    api = api_factory(upload_abandon_after_sec=3600)
    _, key = api.create_account()
    abandoned = api.upload(key)  # PUT, never verified
    never_put = api.presign(key)
    fresh = api.upload(key)
    for up in (abandoned, never_put):
        _age(api.db, _file(api.db, up["key"]).id, 2 * 3600)
    storage: LocalStorage = api.app.state.storage
    folder = storage.path_for(fresh["key"]).parent
    orphan = folder / ".clip.mp4.0123456789abcdef.part"
    orphan.write_bytes(b"half an upload")
    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    live = folder / ".clip.mp4.fedcba9876543210.part"
    live.write_bytes(b"still arriving")

    sessions = make_sessionmaker(api.db.engine)
    report = sweep(sessions, storage, api.settings)
    assert len(report.abandoned) == 2
    assert report.incomplete == 1
    # Idempotent: a second sweep (another dispatcher's) finds nothing left.
    again = sweep(sessions, storage, api.settings)
    assert again.abandoned == []
    assert again.incomplete == 0

    assert storage.head(abandoned["key"]) is None
    assert not orphan.exists()
    assert live.exists()
    assert storage.head(fresh["key"]) is not None
    assert _file(api.db, abandoned["key"]).status is FileStatus.EXPIRED
    assert _file(api.db, fresh["key"]).status is FileStatus.PENDING
    resp = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": abandoned["key"], "target_fps_options": [60]},
    )
    assert resp.status_code == 410, resp.text
    assert "abandoned" in resp.json()["detail"]
    project = api.client.get(f"/projects/{abandoned['project_id']}", headers=auth(key)).json()
    [row] = project["inputs"]
    assert row["status"] == "expired"
    resp = api.client.get(
        f"/projects/{abandoned['project_id']}/files/{row['file_id']}/download", headers=auth(key)
    )
    assert resp.status_code == 410, resp.text


def test_two_sweepers_at_once_delete_each_file_once(api_factory: ApiFactory) -> None:
    api = api_factory(upload_abandon_after_sec=3600)
    _, key = api.create_account()
    ups = [api.upload(key) for _ in range(4)]
    for up in ups:
        _age(api.db, _file(api.db, up["key"]).id, 2 * 3600)
    sessions = make_sessionmaker(api.db.engine)
    reports = []

    def run() -> None:
        reports.append(sweep(sessions, api.app.state.storage, api.settings))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    swept = [f for r in reports for f in r.abandoned]
    assert sorted(swept) == sorted(_file(api.db, up["key"]).id for up in ups)
    assert all(api.app.state.storage.head(up["key"]) is None for up in ups)


def test_dispatcher_loop_runs_the_sweep_on_its_schedule() -> None:
    calls: list[float] = []
    stop = threading.Event()

    class Idle:
        def tick(self) -> None:
            if len(calls) >= 2:
                stop.set()

    thread = threading.Thread(
        target=run_loop,
        args=(Idle(), stop),
        kwargs={
            "poll_sec": 0.05,
            "sweep": lambda: calls.append(time.monotonic()),
            "sweep_interval_sec": 0.2,
        },
    )
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(calls) >= 2
    assert calls[1] - calls[0] >= 0.2


def test_s3_sweep_deletes_abandoned_objects_and_aborts_multipart_uploads(
    db: TestDatabase, s3_storage: S3Storage, s3_settings: Settings
) -> None:
    settings = s3_settings.model_copy(
        update={"database_url": db.url, "upload_abandon_after_sec": 3600}
    )
    with db.session() as s:
        account, _ = accounts.create_account(s, settings, "s3@example.com")
        signed = uploads.presign(
            s, s3_storage, settings, account, filename="clip.mp4", content_type="video/mp4"
        )
        s.commit()
        key, file_id = signed.file.storage_key, signed.file.id
    client = s3_storage.client
    client.put_object(Bucket=s3_storage.bucket, Key=key, Body=b"never verified")
    started = client.create_multipart_upload(Bucket=s3_storage.bucket, Key=key + "-big")
    client.upload_part(
        Bucket=s3_storage.bucket,
        Key=key + "-big",
        UploadId=started["UploadId"],
        PartNumber=1,
        Body=b"x" * 1024,
    )
    _age(db, file_id, 2 * 3600)

    sessions = make_sessionmaker(db.engine)
    # Two hours on: the multipart upload (started now) is past the threshold too.
    report = sweep(sessions, s3_storage, settings, now=utcnow() + timedelta(hours=2))
    assert report.abandoned == [file_id]
    assert report.incomplete == 1
    assert s3_storage.head(key) is None
    assert client.list_multipart_uploads(Bucket=s3_storage.bucket).get("Uploads", []) == []
    assert _file(db, key).status is FileStatus.EXPIRED
    again = sweep(sessions, s3_storage, settings, now=utcnow() + timedelta(hours=2))
    assert again.abandoned == []
    assert again.incomplete == 0
