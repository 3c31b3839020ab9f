"""Test helpers for the client: the dispatcher's part played on cue, and transports that lose
an answer or cut a download the way a flaky network does, in front of the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
from reframe_client import models as m

from reframe.jobs.lifecycle import JobLifecycle
from reframe.services import transitions, uploads
from tests.clients.conftest import LiveApi

FRAMES = 48


class ScriptedRender:
    """An `on_progress` callback that moves the polled job one step per poll through the real
    job lifecycle (what the dispatcher and the render driver call): claim and cold start, half
    the frames, then done with `output` stored as the render (or failed with `fail_with`)."""

    def __init__(self, api: LiveApi, output: Path, *, fail_with: str | None = None) -> None:
        self.api = api
        self.output = output
        self.fail_with = fail_with
        self.lifecycle = JobLifecycle(api.db.sessionmaker)
        self.seen: list[tuple[str, int | None, int | None, float | None]] = []

    def __call__(self, job: m.Job) -> None:
        self.seen.append((job.live_status.value, job.frames_done, job.frames_total, job.eta_sec))
        if job.live_status is m.JobStatus.QUEUED:
            claim = self.lifecycle.claim_next("scripted-dispatcher", timedelta(minutes=5), 8)
            assert claim is not None
            assert (claim.job_id, claim.attempt) == (job.job_id, 1)
        elif job.live_status is m.JobStatus.COLD_START:
            self.lifecycle.record_progress(job.job_id, 1, FRAMES // 2, FRAMES)
        elif job.live_status is m.JobStatus.PROCESSING and self.fail_with:
            self.lifecycle.fail(job.job_id, self.fail_with, attempt=1)
        elif job.live_status is m.JobStatus.PROCESSING:
            self.lifecycle.record_progress(job.job_id, 1, FRAMES, FRAMES)
            self.lifecycle.complete(job.job_id, self._store_output(job), attempt=1)

    def _store_output(self, job: m.Job) -> str:
        key = f"outputs/{job.job_id}/attempt-1/out.mp4"
        self.api.app.state.storage.upload_file(self.output, key, "video/mp4")
        with self.api.db.session() as session:
            row = transitions.lock_job(session, job.job_id)
            output = uploads.register_output(
                session, row, key=key, filename="out.mp4", size_bytes=self.output.stat().st_size
            )
            session.commit()
            return output.id

    def statuses(self) -> list[str]:
        seen: list[str] = []
        for status, *_ in self.seen:
            if not seen or seen[-1] != status:
                seen.append(status)
        return seen


Match = Callable[[httpx.Request], bool]


class _CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that breaks after `limit` bytes, like a connection reset mid-download."""

    def __init__(self, inner: httpx.Response, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    def _cut(self, sent: int, chunk: bytes) -> bytes:
        if sent + len(chunk) >= self.limit:
            return chunk[: self.limit - sent]
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner.iter_raw():
            piece = self._cut(sent, chunk)
            sent += len(piece)
            yield piece
            if sent >= self.limit:
                raise httpx.ReadError("connection reset by peer (test)")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self.inner.aiter_raw():
            piece = self._cut(sent, chunk)
            sent += len(piece)
            yield piece
            if sent >= self.limit:
                raise httpx.ReadError("connection reset by peer (test)")

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


class FlakyNetwork(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Real HTTP to the real server, with two faults on cue, each once:

    - `lose_answer`: the matching request is sent and handled, then its answer is dropped and
      the client sees a reset connection (the server did the work; the client cannot know);
    - `cut_download`: the matching answer's body stops after `cut_after` bytes.
    Every request that went out is kept in `sent`, with the answers the client never saw in
    `lost`.
    """

    def __init__(
        self,
        *,
        lose_answer: Match | None = None,
        cut_download: Match | None = None,
        cut_after: int = 0,
    ) -> None:
        self.sync = httpx.HTTPTransport()
        self.async_ = httpx.AsyncHTTPTransport()
        self.lose_answer = lose_answer
        self.cut_download = cut_download
        self.cut_after = cut_after
        self.sent: list[httpx.Request] = []
        self.lost: list[bytes] = []

    def _fault(self, request: httpx.Request) -> str | None:
        self.sent.append(request)
        if self.lose_answer and not self.lost and self.lose_answer(request):
            return "lose"
        if self.cut_download and self.cut_download(request):
            self.cut_download = None
            return "cut"
        return None

    def _cut(self, response: httpx.Response, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CutStream(response, self.cut_after),
            request=request,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self._fault(request)
        response = self.sync.handle_request(request)
        if fault == "lose":
            self.lost.append(response.read())
            response.close()
            raise httpx.ReadError("connection reset before the answer arrived (test)")
        return self._cut(response, request) if fault == "cut" else response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self._fault(request)
        response = await self.async_.handle_async_request(request)
        if fault == "lose":
            self.lost.append(await response.aread())
            await response.aclose()
            raise httpx.ReadError("connection reset before the answer arrived (test)")
        return self._cut(response, request) if fault == "cut" else response

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        await self.async_.aclose()

    def requests_to(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.sent if r.method == method and r.url.path == path]


def is_post_jobs(request: httpx.Request) -> bool:
    return request.method == "POST" and request.url.path == "/jobs"


def is_storage_get(request: httpx.Request) -> bool:
    return request.method == "GET" and request.url.path.startswith("/storage/")
