"""`Reframe`: the blocking client. Its methods mirror the API's endpoints one to one, plus
`render()`, the whole workflow in one call. `AsyncReframe` (reframe_client.aio) is the same
API for asyncio."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from reframe_client import _core as c
from reframe_client import models as m

T = TypeVar("T")


class Reframe:
    """A client for one API key.

    `api_key` defaults to $REFRAME_API_KEY, `base_url` to $REFRAME_API_URL, else
    http://127.0.0.1:8000. `transport` is passed to httpx (a proxy, a mounted app, a test
    double); `sleep` is how the client waits between retries and polls.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        poll_interval: float = 3.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._core = c.Core(
            api_key,
            base_url,
            retry=c.RetryPolicy(max_retries=max_retries),
            poll_interval=poll_interval,
        )
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            headers={"User-Agent": c.USER_AGENT},
        )
        self._sleep = sleep

    @property
    def base_url(self) -> str:
        return self._core.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Reframe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the driver -------------------------------------------------------------------------

    def _run(self, flow: c.Flow[T]) -> T:
        steps = c.Steps(flow)
        try:
            while (effect := steps.next()) is not None:
                try:
                    steps.done(self._perform(effect))
                except httpx.TransportError as exc:
                    steps.failed(exc)
        finally:
            steps.close()
        return steps.value()

    def _perform(self, effect: c.Effect) -> object:
        if isinstance(effect, c.Sleep):
            self._sleep(effect.seconds)
            return None
        if isinstance(effect, c.Fetch):
            return self._fetch(effect)
        content = _chunks(c.FileChunks(effect.file, effect.on_upload)) if effect.file else None
        response = self._http.request(
            effect.method,
            effect.url,
            headers=effect.headers,
            json=effect.json,
            params=effect.params,
            content=content,
        )
        return c.Reply(response.status_code, response.headers, response.content)

    def _fetch(self, fetch: c.Fetch) -> c.Fetched:
        headers = {"Range": f"bytes={fetch.start}-"} if fetch.start else {}
        sink: c.FileSink | None = None
        try:
            with self._http.stream("GET", fetch.url, headers=headers) as response:
                if response.status_code not in (200, 206):
                    return c.Fetched(
                        response.status_code, response.headers, response.read(), fetch.start, None
                    )
                sink = c.FileSink(fetch, response.status_code, response.headers)
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                return sink.finish()
        except httpx.TransportError as exc:
            if sink is None:
                return c.Fetched(0, {}, b"", fetch.start, None, exc)
            return sink.finish(exc)

    # -- account ----------------------------------------------------------------------------

    def me(self) -> m.Me:
        """Profile, balance (free and paid xeconds) and the key's metadata."""
        return self._run(self._core.call(c.ME))

    def ledger(self, limit: int = 20, offset: int = 0) -> m.LedgerPage:
        """One page of where the credits went (grants, signup credit, charges, refunds,
        cancels), newest first, with the balance they sum to."""
        return self._run(self._core.call(c.LEDGER, params={"limit": limit, "offset": offset}))

    def iter_ledger(self, page_size: int = 100) -> Iterator[m.LedgerEntry]:
        """Every ledger entry of the account, newest first, page by page."""
        offset: int | None = 0
        while offset is not None:
            page = self.ledger(limit=page_size, offset=offset)
            yield from page.items
            offset = page.next_offset

    def rotate_api_key(self) -> m.NewApiKey:
        """A new key; the one this client uses stops working (the client switches over)."""
        created = self._run(self._core.call(c.ROTATE_KEY))
        self._core.api_key = created.api_key
        return created

    # -- pricing ----------------------------------------------------------------------------

    def pricing_config(self) -> m.PricingConfig:
        return self._run(self._core.call(c.PRICING_CONFIG))

    def estimate(
        self,
        duration_sec: float,
        source_fps: float,
        target_fps_options: list[int],
        *,
        preview_seconds: float | None = None,
    ) -> m.Estimate:
        """The price of a clip from its metadata alone (no upload, no key needed)."""
        body: m.EstimateBody = {
            "duration_sec": duration_sec,
            "source_fps": source_fps,
            "target_fps_options": target_fps_options,
        }
        if preview_seconds is not None:
            body["preview_seconds"] = preview_seconds
        return self._run(self._core.call(c.ESTIMATE, json=body))

    def estimate_video(
        self, r2_key: str, target_fps_options: list[int], *, preview_seconds: float | None = None
    ) -> m.VideoEstimate:
        """Probe an uploaded file and price each frame rate against this account's balance."""
        body: m.EstimateVideoBody = {"r2_key": r2_key, "target_fps_options": target_fps_options}
        if preview_seconds is not None:
            body["preview_seconds"] = preview_seconds
        return self._run(self._core.call(c.ESTIMATE_VIDEO, json=body))

    # -- uploads ----------------------------------------------------------------------------

    def presign(
        self, filename: str, content_type: str = "video/mp4", size_bytes: int | None = None
    ) -> m.PresignedUpload:
        body: m.PresignBody = {"filename": filename, "content_type": content_type}
        if size_bytes is not None:
            body["size_bytes"] = size_bytes
        return self._run(self._core.call(c.PRESIGN, json=body))

    def upload(
        self,
        path: str | Path,
        *,
        content_type: str | None = None,
        on_upload: c.UploadCallback | None = None,
    ) -> m.PresignedUpload:
        """Presign, then stream the file to storage. Returns the presign (key, project_id)."""
        file = Path(path)
        presigned = self.presign(
            file.name, content_type or c.guess_video_type(file), file.stat().st_size
        )
        self._run(self._core.upload_file(presigned, file, on_upload))
        return presigned

    # -- jobs -------------------------------------------------------------------------------

    def create_job(
        self,
        r2_key: str,
        project_id: str,
        target_fps: int,
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        preview: bool | float = False,
        output: m.OutputBody | None = None,
        playback_fps: int | None = None,
    ) -> m.JobCreated:
        """Start a render; xeconds are taken now. A generated Idempotency-Key makes the
        client's own retries safe; pass yours to make your retries safe too.

        `preview=True` renders only the first seconds (the server's default length; a number
        picks it), watermarked, free for the first previews of each UTC day. `output`:
        container / codec / quality / audio, e.g. ``{"container": "mov", "codec": "prores"}``;
        `playback_fps`: slow motion (24-60, at most target_fps; no sound)."""
        return self._run(
            self._core.create_job(
                r2_key,
                project_id,
                target_fps,
                webhook_url=webhook_url,
                idempotency_key=idempotency_key,
                preview=preview,
                output=output,
                playback_fps=playback_fps,
            )
        )

    def get_job(self, job_id: str) -> m.Job:
        return self._run(self._core.call(c.GET_JOB, {"job_id": job_id}))

    def list_jobs(self, limit: int = 20, offset: int = 0) -> m.JobPage:
        return self._run(self._core.call(c.LIST_JOBS, params={"limit": limit, "offset": offset}))

    def iter_jobs(self, page_size: int = 50) -> Iterator[m.Job]:
        """Every job of the account, newest first, page by page."""
        offset: int | None = 0
        while offset is not None:
            page = self.list_jobs(limit=page_size, offset=offset)
            yield from page.items
            offset = page.next_offset

    def cancel_job(self, job_id: str) -> m.Job:
        return self._run(self._core.call(c.CANCEL_JOB, {"job_id": job_id}))

    def wait(
        self,
        job_id: str,
        *,
        on_progress: c.JobCallback | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
    ) -> m.Job:
        """Poll until the job ends. Returns it when done; raises RenderFailed when it failed or
        was cancelled, WaitTimeout when `timeout` seconds pass first."""
        return self._run(
            self._core.wait(
                job_id, on_progress=on_progress, poll_interval=poll_interval, timeout=timeout
            )
        )

    def render(
        self,
        path: str | Path,
        target_fps: int,
        output: str | Path | None = None,
        *,
        content_type: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        on_upload: c.UploadCallback | None = None,
        on_estimate: c.EstimateCallback | None = None,
        on_progress: c.JobCallback | None = None,
        on_download: c.DownloadCallback | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
        preview: bool | float = False,
        output_format: m.OutputBody | None = None,
        playback_fps: int | None = None,
    ) -> c.RenderResult:
        """Render a local clip at `target_fps` and save it to `output` (default:
        `<name>-<fps>fps.<container>` next to the input): presign -> upload -> estimate ->
        job -> poll -> download. `output_format` and `playback_fps` are `create_job`'s
        `output` and `playback_fps`."""
        return self._run(
            self._core.render(
                Path(path),
                target_fps,
                Path(output) if output is not None else None,
                content_type=content_type,
                webhook_url=webhook_url,
                idempotency_key=idempotency_key,
                on_upload=on_upload,
                on_estimate=on_estimate,
                on_progress=on_progress,
                on_download=on_download,
                poll_interval=poll_interval,
                timeout=timeout,
                preview=preview,
                output_format=output_format,
                playback_fps=playback_fps,
            )
        )

    # -- projects, files, shares ------------------------------------------------------------

    def list_projects(self, limit: int = 20, offset: int = 0) -> m.ProjectPage:
        return self._run(
            self._core.call(c.LIST_PROJECTS, params={"limit": limit, "offset": offset})
        )

    def get_project(self, project_id: str) -> m.Project:
        return self._run(self._core.call(c.GET_PROJECT, {"project_id": project_id}))

    def file_download(self, project_id: str, file_id: str) -> m.Download:
        """A fresh signed download URL for an input or output file."""
        return self._run(
            self._core.call(c.FILE_DOWNLOAD, {"project_id": project_id, "file_id": file_id})
        )

    def download(
        self,
        url: str,
        dest: str | Path,
        *,
        on_download: c.DownloadCallback | None = None,
    ) -> Path:
        """Save a signed URL (`Job.output_url`, `Download.url`) to `dest`, resuming after
        interruptions."""
        return self._run(self._core.download(url, Path(dest), on_download))

    def share(self, project_id: str) -> m.Share:
        """The project's public review link (its live one, if it has one already)."""
        return self._run(self._core.call(c.CREATE_SHARE, {"project_id": project_id}))

    def revoke_share(self, project_id: str) -> None:
        self._run(self._core.call(c.REVOKE_SHARE, {"project_id": project_id}))

    def get_share(self, token: str) -> m.SharedProject:
        """What a share link shows, without a key."""
        return self._run(self._core.call(c.GET_SHARE, {"token": token}))

    def delete_project(self, project_id: str) -> None:
        """Delete the project: its running renders are cancelled (with the usual refund), its
        inputs, outputs, share links and stored bytes are deleted. A second call is NotFound."""
        self._run(self._core.call(c.DELETE_PROJECT, {"project_id": project_id}))

    def close_account(self, confirm_email: str) -> None:
        """Close the account for good: every project deleted, this key stops working (401).
        `confirm_email` must be the account's email (`me().account.email`)."""
        self._run(self._core.call(c.CLOSE_ACCOUNT, params={"confirm": confirm_email}))


def _chunks(source: c.FileChunks) -> Iterator[bytes]:
    try:
        while chunk := source.read():
            yield chunk
            source.sent_chunk(chunk)
    finally:
        source.close()
