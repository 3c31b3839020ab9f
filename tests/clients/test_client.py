"""The Python client against the real app over real HTTP (SQLite and PostgreSQL, local
storage): the render workflow, each typed error, Retry-After, idempotent retries, streamed
uploads and resumed downloads."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tracemalloc
from pathlib import Path

import httpx
import pytest
from reframe_client import (
    APIConnectionError,
    AsyncReframe,
    Conflict,
    Forbidden,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    RateLimited,
    ReframeError,
    RenderFailed,
    ServerError,
    TooLarge,
    Unauthorized,
    WaitTimeout,
)
from reframe_client import models as m
from sqlalchemy import text

from reframe.config import Settings
from reframe.db.models import File
from reframe.storage.s3 import S3Storage
from tests.clients.conftest import LiveApi, LiveApiFactory
from tests.clients.scripted import FRAMES, FlakyNetwork, ScriptedRender, is_post_jobs
from tests.clients.scripted import is_storage_get as is_download
from tests.fixtures.media import make_clip

MIB = 1024 * 1024
S3_FIELDS = {"storage_backend", "s3_bucket", "s3_endpoint_url", "s3_region"}
S3_FIELDS |= {"s3_access_key_id", "s3_secret_access_key"}


class Sleeps:
    """The client's `sleep`: really waits (a rate limiter needs the time to pass) and keeps
    what it was asked to wait, so a test can see which delays the client chose."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> None:
        import time

        self.asked.append(seconds)
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(seconds)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", frames=24, fps=24)  # 1 s


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """Stands for a render's output: a real video, different from the input."""
    return make_clip(tmp_path / "rendered.mp4", frames=FRAMES, fps=48)


def test_render_runs_the_whole_workflow_and_downloads_the_output(
    live_api: LiveApi, clip: Path, rendered: Path, tmp_path: Path
) -> None:
    key = live_api.create_account(free=30)
    script = ScriptedRender(live_api, rendered)
    uploads: list[tuple[int, int]] = []
    quotes: list[m.VideoOptionQuote | None] = []
    downloads: list[tuple[int, int | None]] = []
    with live_api.client(key, poll_interval=0) as client:
        result = client.render(
            clip,
            48,
            tmp_path / "out" / "smooth.mp4",
            on_upload=lambda sent, total: uploads.append((sent, total)),
            on_estimate=lambda _estimate, quote: quotes.append(quote),
            on_progress=script,
            on_download=lambda got, total: downloads.append((got, total)),
        )
        me = client.me()

    size = clip.stat().st_size
    assert uploads[0] == (0, size)
    assert uploads[-1] == (size, size)
    assert [q.charged_xeconds if q else None for q in quotes] == [1]
    assert script.statuses() == ["queued", "cold_start", "processing", "done"]
    assert (FRAMES // 2, FRAMES) in {(s[1], s[2]) for s in script.seen if s[0] == "processing"}
    assert result.job.live_status is m.JobStatus.DONE
    assert result.job.frames_done == result.job.frames_total == FRAMES
    assert result.output == tmp_path / "out" / "smooth.mp4"
    assert sha256(result.output) == sha256(rendered)
    assert not result.output.with_name("smooth.mp4.part").exists()
    assert downloads[-1] == (rendered.stat().st_size, rendered.stat().st_size)
    assert result.estimate.video.width == 128
    assert result.estimate.video.fps == 24
    assert me.balance.free_xeconds == 29  # 1 s at 48 fps: one xecond, charged once


def test_a_failed_render_raises_render_failed_with_the_refund(
    live_api: LiveApi, clip: Path, rendered: Path, tmp_path: Path
) -> None:
    key = live_api.create_account(free=30)
    script = ScriptedRender(live_api, rendered, fail_with="decode failed at frame 12")
    with live_api.client(key, poll_interval=0) as client:
        with pytest.raises(RenderFailed) as failed:
            client.render(clip, 120, tmp_path / "never.mp4", on_progress=script)
        assert client.me().balance.free_xeconds == 30
    assert failed.value.status == "failed"
    assert failed.value.error == "decode failed at frame 12"
    assert failed.value.refunded_xeconds == failed.value.job.charged_xeconds == 2
    assert isinstance(failed.value, ReframeError)
    assert not (tmp_path / "never.mp4").exists()


def test_wait_gives_up_after_its_timeout_and_the_job_goes_on(live_api: LiveApi, clip: Path) -> None:
    key = live_api.create_account()
    with live_api.client(key) as client:
        up = client.upload(clip)
        job = client.create_job(up.key, up.project_id, 60)
        with pytest.raises(WaitTimeout) as timed_out:
            client.wait(job.job_id, poll_interval=60, timeout=1)
        assert timed_out.value.job.live_status is m.JobStatus.QUEUED
        assert client.get_job(job.job_id).live_status is m.JobStatus.QUEUED


# --- typed errors ------------------------------------------------------------------------------


def test_each_error_status_raises_its_own_type(live_api: LiveApi, clip: Path) -> None:
    owner, other, broke = (
        live_api.create_account(),
        live_api.create_account(),
        live_api.create_account(free=0),
    )
    with live_api.client(owner) as client:
        up = client.upload(clip)
        job = client.create_job(up.key, up.project_id, 60)

        with pytest.raises(InvalidRequest) as bad:
            client.create_job(up.key, up.project_id, 12)
        assert bad.value.status_code == 400
        assert "fps" in bad.value.detail

        with pytest.raises(NotFound) as missing:
            client.get_job("no-such-job")
        assert missing.value.status_code == 404

        client.cancel_job(job.job_id)
        with pytest.raises(Conflict) as ended:
            client.cancel_job(job.job_id)
        assert ended.value.status_code == 409
        assert "cancelled" in ended.value.detail

    with live_api.client(other) as client, pytest.raises(Forbidden) as theirs:
        client.get_job(job.job_id)
    assert theirs.value.status_code == 403

    with live_api.client(broke) as client:
        up = client.upload(clip)
        with pytest.raises(InsufficientCredits) as poor:
            client.create_job(up.key, up.project_id, 60)
    assert poor.value.status_code == 402

    for key in ("rf_live_not-a-real-key", ""):
        with live_api.client(key) as client, pytest.raises(Unauthorized) as who:
            client.me()
        assert who.value.status_code == 401
        assert who.value.detail


def test_an_upload_over_the_limit_is_too_large_before_a_byte_is_sent(
    live_api_factory: LiveApiFactory, clip: Path, tmp_path: Path
) -> None:
    api = live_api_factory(max_upload_bytes=clip.stat().st_size - 1)
    network = FlakyNetwork()
    with (
        api.client(api.create_account(), transport=network) as client,
        pytest.raises(TooLarge) as big,
    ):
        client.render(clip, 60, tmp_path / "out.mp4")
    assert big.value.status_code == 413
    assert "limit" in big.value.detail
    assert [r.method for r in network.sent] == ["POST"]  # the presign; no PUT followed
    assert not (api.settings.resolved_storage_dir / "uploads").exists()


def test_429_is_rate_limited_with_retry_after(live_api_factory: LiveApiFactory) -> None:
    api = live_api_factory(rate_limit_read_per_sec=0.5, rate_limit_read_burst=1)
    with api.client(api.create_account(), max_retries=0) as client:
        client.me()
        with pytest.raises(RateLimited) as limited:
            client.me()
    assert limited.value.status_code == 429
    assert limited.value.retry_after == 2.0  # one token per 2 s


def test_5xx_is_a_server_error_after_reads_are_retried_and_writes_are_not(
    live_api: LiveApi, clip: Path
) -> None:
    sleeps = Sleeps()
    with live_api.client(live_api.create_account(), max_retries=2, sleep=sleeps) as client:
        up = client.upload(clip)
        with live_api.db.engine.begin() as conn:  # the database breaks under the running app
            conn.execute(text("ALTER TABLE jobs RENAME TO jobs_gone"))
        with pytest.raises(ServerError) as read:
            client.list_jobs()
        assert len(sleeps.asked) == 2  # a read is retried
        with live_api.db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE projects RENAME TO projects_gone"))
        with pytest.raises(ServerError) as write:
            client.presign("clip.mp4")
        assert len(sleeps.asked) == 2  # a presign is not: repeating it would make a project
    assert read.value.status_code == write.value.status_code == 500
    assert "Unexpected server error" in read.value.detail
    assert up.key  # the upload before the breakage went through


# --- retries -----------------------------------------------------------------------------------


def test_retry_after_is_honoured_and_the_calls_go_through(
    live_api_factory: LiveApiFactory,
) -> None:
    api = live_api_factory(rate_limit_read_per_sec=1, rate_limit_read_burst=1)
    sleeps = Sleeps()
    with api.client(api.create_account(), sleep=sleeps) as client:
        emails = {client.me().account.email for _ in range(3)}
    assert len(emails) == 1
    assert sleeps.asked, "the limiter never refused, so nothing was tested"
    assert set(sleeps.asked) == {1.0}  # exactly the server's Retry-After, no backoff of its own


def test_a_lost_job_answer_is_retried_with_the_same_key_and_charged_once(
    live_api: LiveApi, clip: Path
) -> None:
    network = FlakyNetwork(lose_answer=is_post_jobs)
    sleeps = Sleeps()
    with live_api.client(live_api.create_account(free=30), transport=network, sleep=sleeps) as c:
        up = c.upload(clip)
        created = c.create_job(up.key, up.project_id, 240)
        jobs, me = c.list_jobs(), c.me()
    posts = network.requests_to("POST", "/jobs")
    assert len(posts) == 2
    assert len(network.lost) == 1
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert m.parse(m.JobCreated, json.loads(network.lost[0])).job_id == created.job_id
    assert jobs.total == 1
    assert me.balance.free_xeconds == 30 - 4 == 30 - created.charged_xeconds


def test_a_lost_presign_answer_is_not_repeated(live_api: LiveApi) -> None:
    def is_presign(request: httpx.Request) -> bool:
        return request.url.path == "/upload/presign"

    network = FlakyNetwork(lose_answer=is_presign)
    with live_api.client(live_api.create_account(), transport=network) as client:
        with pytest.raises(APIConnectionError):
            client.presign("clip.mp4")
        assert client.list_projects().total == 1  # made once, by the one request sent
    assert len(network.requests_to("POST", "/upload/presign")) == 1


# --- streaming ---------------------------------------------------------------------------------


def test_upload_streams_with_content_length_and_never_sends_the_key_to_storage(
    live_api: LiveApi, tmp_path: Path
) -> None:
    data = tmp_path / "three-mib.mp4"
    data.write_bytes(bytes(range(256)) * (3 * MIB // 256 + 7))
    network = FlakyNetwork()
    progress: list[int] = []
    with live_api.client(live_api.create_account(), transport=network) as client:
        up = client.upload(data, on_upload=lambda sent, _total: progress.append(sent))
    (put,) = [r for r in network.sent if r.method == "PUT"]
    assert put.headers["content-length"] == str(data.stat().st_size)
    assert "transfer-encoding" not in put.headers
    assert "authorization" not in put.headers  # the signed URL is the only credential
    assert progress == sorted(progress)
    assert len(progress) >= 4
    assert progress[-1] == data.stat().st_size
    stored = live_api.app.state.storage.path_for(up.key)
    assert sha256(stored) == sha256(data)


def test_a_big_upload_is_streamed_from_disk_not_read_into_memory(
    live_api: LiveApi, tmp_path: Path
) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as f:
        for i in range(48):
            f.write(bytes([i]) * MIB)
    with live_api.client(live_api.create_account()) as client:
        tracemalloc.start()
        try:
            up = client.upload(big)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # Client and server share this process, so the peak covers both; the file is 48 MiB.
    print(f"client upload of 48 MiB: peak Python allocation {peak / MIB:.2f} MiB")
    assert peak < 8 * MIB
    assert sha256(live_api.app.state.storage.path_for(up.key)) == sha256(big)


def test_an_interrupted_download_resumes_with_a_range_request(
    live_api: LiveApi, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    source.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    network = FlakyNetwork(cut_download=is_download, cut_after=700_000)
    sleeps = Sleeps()
    with live_api.client(live_api.create_account(), transport=network, sleep=sleeps) as client:
        up = client.upload(source)
        project = client.get_project(up.project_id)
        link = client.file_download(up.project_id, project.inputs[0].file_id)
        saved = client.download(link.url, tmp_path / "copy.mp4")
    gets = [r for r in network.sent if is_download(r)]
    assert [r.headers.get("range") for r in gets] == [None, "bytes=700000-"]
    assert sha256(saved) == sha256(source)
    assert not (tmp_path / "copy.mp4.part").exists()
    assert len(sleeps.asked) == 1


def test_share_links_round_trip_without_a_key(live_api: LiveApi, clip: Path) -> None:
    key = live_api.create_account()
    with live_api.client(key) as client:
        up = client.upload(clip)
        client.estimate_video(up.key, [60])  # verifies the upload; only ready files are shared
        share = client.share(up.project_id)
        assert client.share(up.project_id).token == share.token  # the live link, not a new one
    with live_api.client("") as anonymous:
        shared = anonymous.get_share(share.token)
        assert [f.filename for f in shared.files] == ["clip.mp4"]
    with live_api.client(live_api.create_account()) as stranger, pytest.raises(Forbidden):
        stranger.share(up.project_id)
    with live_api.client(key) as client:
        client.revoke_share(up.project_id)
    with live_api.client("") as anonymous, pytest.raises(NotFound):
        anonymous.get_share(share.token)


def test_delete_project_and_close_account(live_api: LiveApi, clip: Path) -> None:
    key = live_api.create_account(free=30)
    with live_api.client(key) as client:
        up = client.upload(clip)
        job = client.create_job(up.key, up.project_id, 60)
        share = client.share(up.project_id)
        client.delete_project(up.project_id)
        assert client.get_job(job.job_id).live_status is m.JobStatus.CANCELLED
        assert client.me().balance.total_xeconds == 30  # charged, then refunded once
        with pytest.raises(NotFound, match="deleted"):
            client.get_project(up.project_id)
        with pytest.raises(NotFound):
            client.delete_project(up.project_id)
        email = client.me().account.email
        with pytest.raises(InvalidRequest, match="confirm"):
            client.close_account("not-" + email)
        client.close_account(email)
        with pytest.raises(Unauthorized, match="closed"):
            client.me()
    with live_api.client("") as anonymous, pytest.raises(NotFound):
        anonymous.get_share(share.token)


# --- asyncio -----------------------------------------------------------------------------------


def test_the_async_client_renders_retries_and_types_errors_the_same(
    live_api: LiveApi, clip: Path, rendered: Path, tmp_path: Path
) -> None:
    key = live_api.create_account(free=30)
    script = ScriptedRender(live_api, rendered)
    network = FlakyNetwork(lose_answer=is_post_jobs, cut_download=is_download, cut_after=5000)
    sleeps = Sleeps()
    uploads: list[int] = []

    async def scenario() -> tuple[m.Job, Path, m.Me]:
        async with AsyncReframe(
            key, live_api.base_url, poll_interval=0, transport=network, sleep=sleeps.asleep
        ) as client:
            with pytest.raises(NotFound):
                await client.get_job("nope")
            result = await client.render(
                clip,
                60,
                tmp_path / "async.mp4",
                on_upload=lambda sent, _total: uploads.append(sent),
                on_progress=script,
            )
            listed = [job async for job in client.iter_jobs(page_size=1)]
            assert [j.job_id for j in listed] == [result.job.job_id]
            return result.job, result.output, await client.me()

    job, output, me = asyncio.run(scenario())
    assert job.live_status is m.JobStatus.DONE
    assert script.statuses() == ["queued", "cold_start", "processing", "done"]
    assert sha256(output) == sha256(rendered)
    assert uploads[-1] == clip.stat().st_size
    (put,) = [r for r in network.sent if r.method == "PUT"]
    assert put.headers["content-length"] == str(clip.stat().st_size)
    assert len(network.requests_to("POST", "/jobs")) == 2  # the lost answer was retried...
    assert me.balance.free_xeconds == 29  # ...and charged once
    assert [r.headers.get("range") for r in network.sent if is_download(r)] == [
        None,
        "bytes=5000-",
    ]


@pytest.mark.s3
def test_upload_and_resumed_download_work_against_s3(
    live_api_factory: LiveApiFactory,
    s3_storage: S3Storage,
    s3_settings: Settings,
    s3_endpoint: str,
    clip: Path,
    tmp_path: Path,
) -> None:
    api = live_api_factory(**s3_settings.model_dump(include=S3_FIELDS))
    network = FlakyNetwork(
        cut_download=lambda r: r.method == "GET" and str(r.url).startswith(s3_endpoint),
        cut_after=1000,
    )
    with api.client(api.create_account(), transport=network, sleep=Sleeps()) as client:
        up = client.upload(clip)
        estimate = client.estimate_video(up.key, [60])  # the server reads it back from S3
        inputs = client.get_project(up.project_id).inputs
        link = client.file_download(up.project_id, inputs[0].file_id)
        saved = client.download(link.url, tmp_path / "from-s3.mp4")
    assert estimate.video.width == 128
    (put,) = [r for r in network.sent if r.method == "PUT"]
    assert str(put.url).startswith(s3_endpoint)  # straight to S3, not through the API
    assert "authorization" not in put.headers
    storage_gets = [r for r in network.sent if str(r.url).startswith(s3_endpoint)]
    assert [r.headers.get("range") for r in storage_gets if r.method == "GET"] == [
        None,
        "bytes=1000-",
    ]
    assert sha256(saved) == sha256(clip)
    # Verified, the upload lives on as its pinned copy; its upload key is not kept.
    with api.db.session() as session:
        row = session.get(File, inputs[0].file_id)
        assert row is not None
        assert row.pinned_key is not None
        assert s3_storage.head(row.pinned_key) is not None
    assert s3_storage.head(up.key) is None
