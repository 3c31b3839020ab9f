"""Everything the sync and async clients share, written once and without I/O.

Each operation is a generator that yields *effects* (send this request, sleep this long, fetch
this URL into that file) and receives their results. `Reframe` performs them with
`httpx.Client` and `time.sleep`, `AsyncReframe` with `httpx.AsyncClient` and `asyncio.sleep`;
retries, Retry-After, backoff, polling and the render workflow exist once, here.
"""

from __future__ import annotations

import json
import mimetypes
import os
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from reframe_client import models as m
from reframe_client.errors import (
    APIConnectionError,
    RateLimited,
    RenderFailed,
    UnexpectedResponse,
    WaitTimeout,
    error_for,
    retry_after_seconds,
)

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
VERSION = "0.1.0"
USER_AGENT = f"reframe-client/{VERSION}"
# Big enough that a 250 MB upload is a few hundred socket writes, small enough that memory use
# stays flat and progress moves smoothly.
CHUNK_BYTES = 1024 * 1024

UploadCallback = Callable[[int, int], None]
"""`(bytes_sent, bytes_total)` while a file is uploaded."""
DownloadCallback = Callable[[int, int | None], None]
"""`(bytes_received, bytes_total or None)` while the output is downloaded."""
JobCallback = Callable[[m.Job], None]
"""Called with every poll of `GET /jobs/{id}`: `live_status`, `frames_done`, `frames_total`,
`eta_sec`."""
EstimateCallback = Callable[[m.VideoEstimate, m.VideoOptionQuote | None], None]
"""Called with the price before the job is started; raise from it to stop before any charge."""


# --- the API's routes, as /openapi.json names them --------------------------------------------


@dataclass(frozen=True)
class Route(Generic[T]):
    method: str
    path: str  # the template exactly as in /openapi.json
    model: type[T] | None  # the 200 body; None for 204
    body: type | None = None  # the request body's TypedDict
    public: bool = False  # no API key needed
    # Safe to repeat after an answer was lost: reads, and writes that carry an Idempotency-Key.
    idempotent: bool = False

    def format(self, **params: str) -> str:
        return self.path.format(**{k: quote(v, safe="") for k, v in params.items()})


ME = Route("GET", "/me", m.Me, idempotent=True)
ROTATE_KEY = Route("POST", "/me/api-key", m.NewApiKey)
LEDGER = Route("GET", "/me/ledger", m.LedgerPage, idempotent=True)
PRICING_CONFIG = Route("GET", "/pricing/config", m.PricingConfig, public=True, idempotent=True)
ESTIMATE = Route(
    "POST", "/pricing/estimate", m.Estimate, m.EstimateBody, public=True, idempotent=True
)
PRESIGN = Route("POST", "/upload/presign", m.PresignedUpload, m.PresignBody)
ESTIMATE_VIDEO = Route(
    "POST", "/pricing/estimate-video", m.VideoEstimate, m.EstimateVideoBody, idempotent=True
)
CREATE_JOB = Route("POST", "/jobs", m.JobCreated, m.JobCreateBody, idempotent=True)
GET_JOB = Route("GET", "/jobs/{job_id}", m.Job, idempotent=True)
LIST_JOBS = Route("GET", "/jobs", m.JobPage, idempotent=True)
CANCEL_JOB = Route("POST", "/jobs/{job_id}/cancel", m.Job)
LIST_PROJECTS = Route("GET", "/projects", m.ProjectPage, idempotent=True)
GET_PROJECT = Route("GET", "/projects/{project_id}", m.Project, idempotent=True)
FILE_DOWNLOAD = Route(
    "GET", "/projects/{project_id}/files/{file_id}/download", m.Download, idempotent=True
)
CREATE_SHARE = Route("POST", "/projects/{project_id}/share", m.Share, idempotent=True)
REVOKE_SHARE: Route[None] = Route("DELETE", "/projects/{project_id}/share", None, idempotent=True)
GET_SHARE = Route("GET", "/share/{token}", m.SharedProject, public=True, idempotent=True)
# Not retried after a lost answer: the delete may have happened, and its repeat would answer 404
# for a deletion that succeeded.
DELETE_PROJECT: Route[None] = Route("DELETE", "/projects/{project_id}", None)
CLOSE_ACCOUNT: Route[None] = Route("DELETE", "/me", None)

ROUTES: tuple[Route[Any], ...] = (
    ME,
    ROTATE_KEY,
    LEDGER,
    PRICING_CONFIG,
    ESTIMATE,
    PRESIGN,
    ESTIMATE_VIDEO,
    CREATE_JOB,
    GET_JOB,
    LIST_JOBS,
    CANCEL_JOB,
    LIST_PROJECTS,
    GET_PROJECT,
    FILE_DOWNLOAD,
    CREATE_SHARE,
    REVOKE_SHARE,
    GET_SHARE,
    DELETE_PROJECT,
    CLOSE_ACCOUNT,
)


# --- effects: what a driver performs ----------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One HTTP exchange. A transport failure is thrown back into the generator."""

    method: str
    url: str
    headers: dict[str, str]
    json: object | None = None
    params: dict[str, str | int] | None = None
    file: Path | None = None  # streamed from disk as the body
    on_upload: UploadCallback | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Fetch:
    """GET `url` into `dest` from byte `start` on (a Range request when start > 0)."""

    url: str
    dest: Path
    start: int
    on_progress: DownloadCallback | None = None


@dataclass(frozen=True)
class Fetched:
    status: int  # 0 when no answer came
    headers: Mapping[str, str]
    body: bytes  # the error body, for a status other than 200/206
    written: int  # bytes of `dest` that are good
    total: int | None  # the object's size, when the answer said
    failure: httpx.TransportError | None = None


Effect = Send | Sleep | Fetch
Flow = Generator[Effect, Any, T]


class Steps(Generic[T]):
    """Walks a flow for a driver: `next()` gives the next effect (None once the flow has
    returned), the driver hands back what performing it gave with `done()` or `failed()`."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self._result: object = None
        self._failure: httpx.TransportError | None = None
        self._value: T | None = None
        self._finished = False

    def next(self) -> Effect | None:
        result, failure = self._result, self._failure
        self._result, self._failure = None, None
        try:
            return self._flow.send(result) if failure is None else self._flow.throw(failure)
        except StopIteration as stop:
            self._value, self._finished = stop.value, True
            return None

    def done(self, result: object) -> None:
        self._result = result

    def failed(self, failure: httpx.TransportError) -> None:
        self._failure = failure

    def value(self) -> T:
        assert self._finished, "the flow has not returned yet"
        return self._value  # type: ignore[return-value]  # T itself may be None

    def close(self) -> None:
        self._flow.close()


# --- helpers the drivers share ----------------------------------------------------------------


class FileChunks:
    """Reads a file in chunks for a streamed upload, reporting what was handed to the socket."""

    def __init__(self, path: Path, on_upload: UploadCallback | None) -> None:
        self.path = path
        self.total = path.stat().st_size
        self.sent = 0
        self.on_upload = on_upload
        self._file: IO[bytes] | None = None

    def read(self) -> bytes:
        if self._file is None:
            self._file = self.path.open("rb")
            if self.on_upload:
                self.on_upload(0, self.total)
        chunk = self._file.read(CHUNK_BYTES)
        if not chunk:
            self.close()
        return chunk

    def sent_chunk(self, chunk: bytes) -> None:
        # httpx asks for the next chunk only after writing this one, so this counts bytes
        # actually written to the connection, not bytes read from disk.
        self.sent += len(chunk)
        if self.on_upload:
            self.on_upload(self.sent, self.total)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class FileSink:
    """Writes a (possibly resumed) download into its `.part` file."""

    def __init__(self, fetch: Fetch, status: int, headers: Mapping[str, str]) -> None:
        self.fetch = fetch
        self.status = status
        self.headers = headers
        resumed = status == 206 and _range_start(headers) == fetch.start
        self.written = fetch.start if resumed else 0
        self.total = _object_size(headers, self.written if resumed else 0)
        self._file = fetch.dest.open("r+b" if resumed else "wb")
        self._file.seek(self.written)
        self._file.truncate()

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.written += len(chunk)
        if self.fetch.on_progress:
            self.fetch.on_progress(self.written, self.total)

    def finish(self, failure: httpx.TransportError | None = None) -> Fetched:
        self._file.close()
        return Fetched(self.status, self.headers, b"", self.written, self.total, failure)


def _range_start(headers: Mapping[str, str]) -> int | None:
    # "bytes 1000-4999/5000" -> 1000
    value = headers.get("content-range", "")
    try:
        return int(value.split(" ", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _object_size(headers: Mapping[str, str], offset: int) -> int | None:
    total = headers.get("content-range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = headers.get("content-length", "")
    return offset + int(length) if length.isdigit() else None


def redact(url: str) -> str:
    """A URL without its query: signed storage URLs carry their signature there."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def guess_video_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed if guessed and guessed.startswith("video/") else "video/mp4"


# --- the results of a render ------------------------------------------------------------------


@dataclass(frozen=True)
class RenderResult:
    job: m.Job  # the final poll: live_status done, output_url, frames_total, ...
    output: Path  # where the render was saved
    estimate: m.VideoEstimate  # what was quoted before the job was started
    upload: m.PresignedUpload


@dataclass
class RetryPolicy:
    """How often and how long to retry. Reads and idempotent writes are retried on transport
    errors and 5xx answers; every request is retried on 429 (the rate limiter refuses before
    the request is handled). The wait is Retry-After when the server sent one, else an
    exponential backoff with jitter."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    jitter: Callable[[], float] = field(default=random.random)

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2.0**attempt)
        # "Equal jitter": at least half the step, so retries never bunch up at zero.
        return ceiling / 2 + ceiling / 2 * self.jitter()


# --- the operations ---------------------------------------------------------------------------


class Core:
    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        *,
        retry: RetryPolicy,
        poll_interval: float,
    ) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("REFRAME_API_KEY")
        self.base_url = (base_url or os.environ.get("REFRAME_API_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.retry = retry
        self.poll_interval = poll_interval

    # -- single calls ---------------------------------------------------------------------

    def call(
        self,
        route: Route[T],
        path: Mapping[str, str] | None = None,
        *,
        json: object | None = None,
        params: dict[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Flow[T]:
        send = Send(
            route.method,
            self.base_url + route.format(**(path or {})),
            {**self._auth(route), **(headers or {})},
            json=json,
            params=params,
        )
        reply = yield from self.exchange(send, idempotent=route.idempotent)
        if route.model is None:
            return None  # type: ignore[return-value]  # Route[None]: 204, nothing to decode
        try:
            return m.parse(route.model, _json(reply))
        except (ValueError, m.ModelError) as exc:
            raise UnexpectedResponse(
                f"{route.method} {route.path} answered {reply.status} with a body that does not "
                f"match {route.model.__name__}: {exc}"
            ) from exc

    def _auth(self, route: Route[Any]) -> dict[str, str]:
        # Without a key the request still goes out: the server's 401 says how to get one.
        if route.public or not self.api_key:
            return {}
        return {"Authorization": f"Bearer {self.api_key}"}

    def exchange(self, send: Send, *, idempotent: bool) -> Flow[Reply]:
        """`send`, retried as RetryPolicy says; an error answer becomes its typed error."""
        attempt = 0
        while True:
            wait: float
            try:
                reply: Reply = yield send
            except httpx.TransportError as exc:
                # A write whose connection failed after it was sent may have happened; only a
                # refused connection proves it did not.
                safe = idempotent or isinstance(exc, httpx.ConnectError)
                if not safe or attempt >= self.retry.max_retries:
                    raise APIConnectionError(
                        f"{send.method} {redact(send.url)} failed: {exc!r}"
                        + (f" after {attempt + 1} attempts" if attempt else "")
                    ) from exc
                wait = self.retry.backoff(attempt)
            else:
                if reply.status < 400:
                    return reply
                error = error_for(
                    reply.status,
                    reply.body,
                    reply.headers,
                    method=send.method,
                    url=redact(send.url),
                )
                retryable = isinstance(error, RateLimited) or (reply.status >= 500 and idempotent)
                if not retryable or attempt >= self.retry.max_retries:
                    raise error
                hinted = retry_after_seconds(reply.headers)
                wait = hinted if hinted is not None else self.retry.backoff(attempt)
            attempt += 1
            yield Sleep(wait)

    # -- files ------------------------------------------------------------------------------

    def upload_file(
        self, presigned: m.PresignedUpload, path: Path, on_upload: UploadCallback | None
    ) -> Flow[None]:
        """PUT the file to its signed URL, streamed from disk with a Content-Length.

        A presigned PUT (S3, R2, MinIO, the local backend) takes the object in one request,
        so a failed attempt starts again from the first byte; repeating a PUT is safe.
        """
        size = path.stat().st_size
        headers = {**presigned.headers, "Content-Length": str(size)}
        # The signed URL is the credential: the API key never goes to storage.
        send = Send(presigned.method, presigned.upload_url, headers, file=path, on_upload=on_upload)
        yield from self.exchange(send, idempotent=True)

    def download(self, url: str, dest: Path, on_progress: DownloadCallback | None) -> Flow[Path]:
        """GET a signed URL into `dest`. An interrupted download resumes where it stopped with a
        Range request (both storage backends answer them); `dest` appears only when complete."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        written = 0
        attempt = 0
        while True:
            got: Fetched = yield Fetch(url, part, written, on_progress)
            complete = got.total is None or got.written >= got.total
            if got.failure is None and got.status in (200, 206) and complete:
                part.replace(dest)
                return dest
            if got.failure is None and got.status not in (200, 206):
                if got.status == 416:  # asked for bytes past the end: start over
                    written = 0
                else:
                    error = error_for(
                        got.status, got.body, got.headers, method="GET", url=redact(url)
                    )
                    if not (isinstance(error, RateLimited) or got.status >= 500):
                        raise error
                    if attempt >= self.retry.max_retries:
                        raise error
            else:
                written = got.written
                if attempt >= self.retry.max_retries:
                    raise APIConnectionError(
                        f"download of {redact(url)} stopped at byte {got.written} of "
                        f"{got.total}: {got.failure!r}"
                    )
            hinted = retry_after_seconds(got.headers)
            yield Sleep(hinted if hinted is not None else self.retry.backoff(attempt))
            attempt += 1

    # -- jobs -------------------------------------------------------------------------------

    def create_job(
        self,
        r2_key: str,
        project_id: str,
        target_fps: int,
        *,
        webhook_url: str | None,
        idempotency_key: str | None,
        preview: bool | float = False,
        output: m.OutputBody | None = None,
        playback_fps: int | None = None,
    ) -> Flow[m.JobCreated]:
        body: m.JobCreateBody = {
            "r2_key": r2_key,
            "project_id": project_id,
            "target_fps": target_fps,
        }
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        add_preview(body, preview)
        if output:
            body["output"] = output
        if playback_fps is not None:
            body["playback_fps"] = playback_fps
        # Always sent, so a retry after a lost answer returns the same job and charges once.
        key = idempotency_key or uuid.uuid4().hex
        return (yield from self.call(CREATE_JOB, json=body, headers={"Idempotency-Key": key}))

    def wait(
        self,
        job_id: str,
        *,
        on_progress: JobCallback | None,
        poll_interval: float | None,
        timeout: float | None,
    ) -> Flow[m.Job]:
        """Poll until the job ends: the job when `done`, RenderFailed when failed/cancelled."""
        interval = self.poll_interval if poll_interval is None else poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = yield from self.call(GET_JOB, {"job_id": job_id})
            if on_progress:
                on_progress(job)
            if job.live_status is m.JobStatus.DONE:
                return job
            if job.live_status.is_terminal:
                raise RenderFailed(job)
            if deadline is not None and time.monotonic() + interval > deadline:
                raise WaitTimeout(
                    f"job {job_id} is still {job.live_status.value} after {timeout} s", job
                )
            yield Sleep(interval)

    def render(
        self,
        path: Path,
        target_fps: int,
        output: Path | None,
        *,
        content_type: str | None,
        webhook_url: str | None,
        idempotency_key: str | None,
        on_upload: UploadCallback | None,
        on_estimate: EstimateCallback | None,
        on_progress: JobCallback | None,
        on_download: DownloadCallback | None,
        poll_interval: float | None,
        timeout: float | None,
        preview: bool | float = False,
        output_format: m.OutputBody | None = None,
        playback_fps: int | None = None,
    ) -> Flow[RenderResult]:
        """presign -> PUT -> estimate-video -> POST /jobs -> poll -> download."""
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        presign_body: m.PresignBody = {
            "filename": path.name,
            "content_type": content_type or guess_video_type(path),
            # Declared so an over-limit file is refused (413) before a byte is sent.
            "size_bytes": path.stat().st_size,
        }
        upload = yield from self.call(PRESIGN, json=presign_body)
        yield from self.upload_file(upload, path, on_upload)
        quote_body: m.EstimateVideoBody = {"r2_key": upload.key, "target_fps_options": [target_fps]}
        estimate = yield from self.call(ESTIMATE_VIDEO, json=quote_body)
        if on_estimate:
            on_estimate(estimate, estimate.option(target_fps))
        created = yield from self.create_job(
            upload.key,
            upload.project_id,
            target_fps,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            preview=preview,
            output=output_format,
            playback_fps=playback_fps,
        )
        job = yield from self.wait(
            created.job_id, on_progress=on_progress, poll_interval=poll_interval, timeout=timeout
        )
        if job.output_url is None:
            raise UnexpectedResponse(f"job {job.job_id} is done but has no output_url")
        dest = output or path.with_name(default_output_name(path, job))
        saved = yield from self.download(job.output_url, dest, on_download)
        return RenderResult(job=job, output=saved, estimate=estimate, upload=upload)


def add_preview(body: m.JobCreateBody, preview: bool | float) -> None:
    """`preview=True`: the server's default length; a number: that many seconds."""
    if preview is False:
        return
    body["preview"] = True
    if not isinstance(preview, bool):
        body["preview_seconds"] = float(preview)


def default_output_name(path: Path, job: m.Job) -> str:
    """`clip-60fps.mp4` next to `clip.mov`; the job's container, `-at-30fps` for slow motion,
    `-preview` for a preview (the names the server gives its downloads)."""
    slow = f"-at-{job.playback_fps}fps" if job.playback_fps else ""
    tail = "-preview" if job.preview else ""
    return f"{path.stem}-{job.target_fps}fps{slow}{tail}.{job.output.container}"


def _json(reply: Reply) -> object:
    if not reply.body:
        raise ValueError("empty body")
    return json.loads(reply.body)
