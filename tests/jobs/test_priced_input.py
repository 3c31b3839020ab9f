"""The object a job is priced on is the object it renders (issue 12, items 1 and 3).

The attacks, as a client would run them: PUT a short clip, accept a job for its price, put a
longer clip under the same upload URL, ask for an estimate again, and have the longer clip
rendered; or change the input while it renders to get the work refunded. Each runs on SQLite
and PostgreSQL, with local storage and with the real loopback S3 server.

The render itself is a stand-in for the Ray pipeline (`run_render`) that reads the input the
way the pipeline does (through the storage it is handed, with the pin it is handed) and writes
a small output, so what the render would read is observed without starting Ray.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from reframe.db.models import File, FileRole, FileStatus, Job, JobStatus, LedgerEntry
from reframe.jobs.driver import AttemptReporter, load_job, render_stored_job, run_attempt
from reframe.jobs.lifecycle import JobLifecycle
from reframe.options import RenderOptions
from reframe.pipeline.actors import WorkerConfig
from tests.fixtures.app import ApiFactory, ApiHarness, auth, path_and_query
from tests.fixtures.media import make_clip
from tests.fixtures.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY

SHORT_FRAMES = 24  # 1 s at 24 fps
LONG_FRAMES = 24 * 20  # 20 s: enough to price at 20 times the short clip


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class StandInPipeline:
    """Replaces `run_render`: records the bytes of the input it was pointed at, then writes an
    output. `during` runs in the middle of the "render" (the attacker's move)."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.read: list[bytes] = []
        self.during: Callable[[], None] | None = None

    def __call__(self, *, storage: Any, input_key: str, output: Path, **kw: Any) -> Any:
        pin = kw.get("input_pin")
        opened = storage.local_path(input_key, pin=pin) if pin else storage.local_path(input_key)
        with opened as path:
            self.read.append(path.read_bytes())
        progress = kw.get("progress")
        if progress is not None:
            progress(24, 48, 1, 2)
        if self.during is not None:
            self.during()
        # Actors read the input again while they render (each opens it for itself).
        opened = storage.local_path(input_key, pin=pin) if pin else storage.local_path(input_key)
        with opened as path:
            self.read.append(path.read_bytes())
        if progress is not None:
            progress(48, 48, 2, 2)
        output.write_bytes(self.output.read_bytes())
        return None


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StandInPipeline:
    stand_in = StandInPipeline(make_clip(tmp_path / "rendered.mp4", frames=12, fps=48))
    monkeypatch.setattr("reframe.jobs.driver.run_render", stand_in)
    return stand_in


@pytest.fixture
def clips(tmp_path: Path) -> tuple[Path, Path]:
    short = make_clip(tmp_path / "short.mp4", frames=SHORT_FRAMES, width=64, height=48)
    long = make_clip(tmp_path / "long.mp4", frames=LONG_FRAMES, width=64, height=48)
    return short, long


def _local_api(api_factory: ApiFactory) -> ApiHarness:
    return api_factory()


def _s3_api(api_factory: ApiFactory, s3_endpoint: str, s3_bucket: str) -> ApiHarness:
    api = api_factory(
        storage_backend="s3",
        s3_bucket=s3_bucket,
        s3_endpoint_url=s3_endpoint,
        s3_region=S3_REGION,
        s3_access_key_id=S3_ACCESS_KEY,
        s3_secret_access_key=S3_SECRET_KEY,
    )
    api.app.state.storage.ensure_bucket()
    return api


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend_api(request: pytest.FixtureRequest, api_factory: ApiFactory) -> ApiHarness:
    if request.param == "local":
        return _local_api(api_factory)
    return _s3_api(
        api_factory,
        request.getfixturevalue("s3_endpoint"),
        request.getfixturevalue("s3_bucket"),
    )


def _put(api: ApiHarness, presigned: dict[str, Any], path: Path) -> int:
    """PUT `path` to the upload URL the way a client does; returns the status."""
    url = presigned["upload_url"]
    if url.startswith(api.settings.public_base_url):  # local storage: served by the app
        resp = api.client.put(
            path_and_query(url), content=path.read_bytes(), headers=presigned["headers"]
        )
    else:
        resp = httpx.put(url, content=path.read_bytes(), headers=presigned["headers"])
    return resp.status_code


def _estimate(api: ApiHarness, key: str, presigned: dict[str, Any]) -> dict[str, Any]:
    resp = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": presigned["key"], "target_fps_options": [240]},
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _accept(api: ApiHarness, key: str, presigned: dict[str, Any]) -> dict[str, Any]:
    resp = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": presigned["key"], "project_id": presigned["project_id"], "target_fps": 240},
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _claim(api: ApiHarness, job_id: str) -> int:
    from datetime import timedelta

    claim = JobLifecycle(api.db.sessionmaker).claim_next("test", timedelta(minutes=5), 8)
    assert claim is not None
    assert claim.job_id == job_id
    return claim.attempt


def _render(api: ApiHarness, job_id: str, attempt: int) -> int:
    """One attempt of the job through the real driver and lifecycle."""
    settings = api.settings
    storage = api.app.state.storage

    def render(job: Job, report: AttemptReporter) -> str:
        file_id, _ = render_stored_job(
            job,
            report,
            storage=storage,
            sessions=api.db.sessionmaker,
            worker=WorkerConfig.from_settings(settings),
            options=RenderOptions(),
        )
        return file_id

    return run_attempt(settings, job_id, attempt, render, sessions=api.db.sessionmaker)


def _job(api: ApiHarness, job_id: str) -> Job:
    job = load_job(api.db.sessionmaker, job_id)
    assert job is not None
    return job


def test_a_longer_clip_put_after_pricing_is_never_rendered_for_the_short_price(
    backend_api: ApiHarness, pipeline: StandInPipeline, clips: tuple[Path, Path]
) -> None:
    api = backend_api
    short, long = clips
    _, key = api.create_account(free=0, paid=10_000)
    up = api.presign(key, "clip.mp4")
    assert _put(api, up, short) == 200
    cheap = _estimate(api, key, up)["options"][0]["charged_xeconds"]
    job = _accept(api, key, up)
    assert job["charged_xeconds"] == cheap

    # The upload URL is still valid: the attacker sends the long clip under the same key.
    # Local storage refuses it (the key is sealed once verified); S3 cannot revoke a URL.
    status = _put(api, up, long)
    if api.settings.storage_backend == "local":
        assert status == 409
    # estimate-video again: it must neither re-price nor re-pin the accepted job's input.
    again = _estimate(api, key, up)
    assert again["options"][0]["charged_xeconds"] == cheap
    assert again["video"]["frame_count"] == SHORT_FRAMES

    attempt = _claim(api, job["job_id"])
    assert _render(api, job["job_id"], attempt) == 0
    # Every read of the input during the render got the bytes that were priced.
    assert pipeline.read
    assert {_sha(data) for data in pipeline.read} == {_sha(short.read_bytes())}
    done = _job(api, job["job_id"])
    assert done.status is JobStatus.DONE
    assert done.refunded_xeconds == 0
    assert done.charged_xeconds == cheap


def test_the_job_row_pins_the_object_and_probe_it_was_charged_on(
    backend_api: ApiHarness, pipeline: StandInPipeline, clips: tuple[Path, Path]
) -> None:
    api = backend_api
    short, long = clips
    _, key = api.create_account(free=0, paid=10_000)
    up = api.presign(key, "clip.mp4")
    assert _put(api, up, short) == 200
    accepted = _accept(api, key, up)
    job = _job(api, accepted["job_id"])
    assert job.input_sha256 == _sha(short.read_bytes())
    assert job.input_size_bytes == short.stat().st_size
    assert job.input_key is not None
    assert job.input_key != up["key"]
    assert job.input_probe is not None
    assert job.input_probe["frame_count"] == SHORT_FRAMES
    pinned = (job.input_key, job.input_sha256, job.input_version, job.input_probe)

    _put(api, up, long)
    _estimate(api, key, up)
    job = _job(api, accepted["job_id"])
    assert (job.input_key, job.input_sha256, job.input_version, job.input_probe) == pinned
    assert job.input_file.probe is not None
    assert job.input_file.probe["frame_count"] == SHORT_FRAMES


def test_changing_the_input_during_the_render_is_no_free_render(
    backend_api: ApiHarness, pipeline: StandInPipeline, clips: tuple[Path, Path]
) -> None:
    """The free compute loop: the input changes after the pre-check, the post-render check
    fails, and everything is refunded although the work was done. Now the change cannot
    reach the render at all: it renders what was priced and is charged for it."""
    api = backend_api
    short, long = clips
    _, key = api.create_account(free=0, paid=10_000)
    up = api.presign(key, "clip.mp4")
    assert _put(api, up, short) == 200
    accepted = _accept(api, key, up)
    pipeline.during = lambda: (_put(api, up, long), None)[1]

    attempt = _claim(api, accepted["job_id"])
    _render(api, accepted["job_id"], attempt)
    job = _job(api, accepted["job_id"])
    assert job.status is JobStatus.DONE
    assert job.refunded_xeconds == 0
    with api.db.session() as session:
        refunds = session.scalars(
            select(LedgerEntry).where(LedgerEntry.job_id == job.id, LedgerEntry.delta > 0)
        ).all()
        assert refunds == []


def test_a_pinned_object_altered_in_storage_is_refused_before_any_work(
    backend_api: ApiHarness, pipeline: StandInPipeline, clips: tuple[Path, Path]
) -> None:
    """Only the server writes the pinned copy; should it change anyway (an operator's mistake,
    storage damage, or bytes that merely share the old ETag), the render refuses to read it
    before any frame is made, and the customer, who could not have caused it, is refunded."""
    api = backend_api
    short, long = clips
    _, key = api.create_account(free=0, paid=10_000)
    up = api.presign(key, "clip.mp4")
    assert _put(api, up, short) == 200
    accepted = _accept(api, key, up)
    job = _job(api, accepted["job_id"])
    assert job.input_key is not None
    api.app.state.storage.upload_file(long, job.input_key, "video/mp4")

    attempt = _claim(api, accepted["job_id"])
    assert _render(api, accepted["job_id"], attempt) == 1
    assert pipeline.read == []
    job = _job(api, accepted["job_id"])
    assert job.status is JobStatus.FAILED
    assert job.refunded_xeconds == job.charged_xeconds
    assert job.output_file_id is None


def test_an_output_is_never_ready_for_a_job_that_ended_otherwise(
    backend_api: ApiHarness, pipeline: StandInPipeline, clips: tuple[Path, Path]
) -> None:
    """The owner cancels (refunded) while the render runs; the render then finishes and
    stores its output. That output must not become a ready, downloadable or shared file."""
    api = backend_api
    short, _ = clips
    account_id, key = api.create_account(free=0, paid=10_000)
    up = api.presign(key, "clip.mp4")
    assert _put(api, up, short) == 200
    accepted = _accept(api, key, up)
    job_id = accepted["job_id"]
    life = JobLifecycle(api.db.sessionmaker)
    pipeline.during = lambda: (life.cancel(job_id, account_id), None)[1]

    attempt = _claim(api, job_id)
    _render(api, job_id, attempt)
    job = _job(api, job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.output_file_id is None
    with api.db.session() as session:
        outputs = session.scalars(
            select(File).where(File.project_id == job.project_id, File.role == FileRole.OUTPUT)
        ).all()
        assert all(f.status is not FileStatus.READY for f in outputs)
        output_ids = [f.id for f in outputs]
    for file_id in output_ids:
        resp = api.client.get(
            f"/projects/{job.project_id}/files/{file_id}/download", headers=auth(key)
        )
        assert resp.status_code == 404, resp.text
    share = api.client.post(f"/projects/{job.project_id}/share", headers=auth(key))
    assert share.status_code == 200, share.text
    shared = api.client.get(f"/share/{share.json()['token']}")
    assert shared.status_code == 200, shared.text
    assert [f["role"] for f in shared.json()["files"]] == ["input"]


def test_local_storage_refuses_a_put_to_a_verified_upload(
    api: ApiHarness, clips: tuple[Path, Path]
) -> None:
    short, long = clips
    _, key = api.create_account(free=0, paid=10_000)
    up = api.presign(key, "clip.mp4")
    assert _put(api, up, short) == 200
    _estimate(api, key, up)
    resp = api.client.put(
        path_and_query(up["upload_url"]), content=long.read_bytes(), headers=up["headers"]
    )
    assert resp.status_code == 409
    assert "presign a new upload" in resp.json()["detail"]


def test_an_upload_verified_before_pins_is_pinned_as_priced_and_never_reprobed(
    api: ApiHarness, clips: tuple[Path, Path]
) -> None:
    """Files verified before migration 0006 have a probe and a version but no pinned copy:
    the version that was priced is pinned on next use, and any other version is refused."""
    short, long = clips
    _, key = api.create_account(free=0, paid=10_000)
    storage = api.app.state.storage

    def legacy_upload() -> dict[str, Any]:
        up = api.presign(key, "clip.mp4")
        assert _put(api, up, short) == 200
        _estimate(api, key, up)
        with api.db.session() as session:
            row = session.scalar(select(File).where(File.storage_key == up["key"]))
            assert row is not None
            assert row.pinned_key is not None
            # As 0005 left it: the object still under the upload key, its version, no pin.
            storage.upload_file(short, up["key"], "video/mp4")
            info = storage.head(up["key"])
            assert info is not None
            storage.delete(row.pinned_key)
            row.pinned_key = row.content_sha256 = None
            row.object_version = info.version
            session.commit()
        return up

    up = legacy_upload()
    body = _estimate(api, key, up)
    assert body["video"]["frame_count"] == SHORT_FRAMES
    with api.db.session() as session:
        row = session.scalar(select(File).where(File.storage_key == up["key"]))
        assert row is not None
        assert row.content_sha256 == _sha(short.read_bytes())
        assert row.pinned_key is not None
    assert storage.head(up["key"]) is None

    changed = legacy_upload()
    storage.upload_file(long, changed["key"], "video/mp4")  # replaced after it was priced
    resp = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": changed["key"], "target_fps_options": [240]},
    )
    assert resp.status_code == 409, resp.text
    assert "presign a new upload" in resp.json()["detail"].lower()
