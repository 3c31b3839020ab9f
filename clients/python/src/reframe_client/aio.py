"""`AsyncReframe`: the client for asyncio. Same methods and behaviour as `Reframe` (they share
reframe_client._core); only the I/O is asynchronous."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from reframe_client import _core as c
from reframe_client import models as m

T = TypeVar("T")


class AsyncReframe:
    """An asyncio client for one API key; see `Reframe` for the arguments."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        poll_interval: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._core = c.Core(
            api_key,
            base_url,
            retry=c.RetryPolicy(max_retries=max_retries),
            poll_interval=poll_interval,
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            headers={"User-Agent": c.USER_AGENT},
        )
        self._sleep = sleep

    @property
    def base_url(self) -> str:
        return self._core.base_url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncReframe:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the driver -------------------------------------------------------------------------

    async def _run(self, flow: c.Flow[T]) -> T:
        steps = c.Steps(flow)
        try:
            while (effect := steps.next()) is not None:
                try:
                    steps.done(await self._perform(effect))
                except httpx.TransportError as exc:
                    steps.failed(exc)
        finally:
            steps.close()
        return steps.value()

    async def _perform(self, effect: c.Effect) -> object:
        if isinstance(effect, c.Sleep):
            await self._sleep(effect.seconds)
            return None
        if isinstance(effect, c.Fetch):
            return await self._fetch(effect)
        content = _chunks(c.FileChunks(effect.file, effect.on_upload)) if effect.file else None
        response = await self._http.request(
            effect.method,
            effect.url,
            headers=effect.headers,
            json=effect.json,
            params=effect.params,
            content=content,
        )
        return c.Reply(response.status_code, response.headers, response.content)

    async def _fetch(self, fetch: c.Fetch) -> c.Fetched:
        headers = {"Range": f"bytes={fetch.start}-"} if fetch.start else {}
        sink: c.FileSink | None = None
        try:
            async with self._http.stream("GET", fetch.url, headers=headers) as response:
                if response.status_code not in (200, 206):
                    body = await response.aread()
                    return c.Fetched(
                        response.status_code, response.headers, body, fetch.start, None
                    )
                sink = c.FileSink(fetch, response.status_code, response.headers)
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
                return sink.finish()
        except httpx.TransportError as exc:
            if sink is None:
                return c.Fetched(0, {}, b"", fetch.start, None, exc)
            return sink.finish(exc)

    # -- account and pricing ----------------------------------------------------------------

    async def me(self) -> m.Me:
        return await self._run(self._core.call(c.ME))

    async def ledger(self, limit: int = 20, offset: int = 0) -> m.LedgerPage:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        return await self._run(self._core.call(c.LEDGER, params=params))

    async def iter_ledger(self, page_size: int = 100) -> AsyncIterator[m.LedgerEntry]:
        offset: int | None = 0
        while offset is not None:
            page = await self.ledger(limit=page_size, offset=offset)
            for entry in page.items:
                yield entry
            offset = page.next_offset

    async def rotate_api_key(self) -> m.NewApiKey:
        created = await self._run(self._core.call(c.ROTATE_KEY))
        self._core.api_key = created.api_key
        return created

    async def pricing_config(self) -> m.PricingConfig:
        return await self._run(self._core.call(c.PRICING_CONFIG))

    async def estimate(
        self,
        duration_sec: float,
        source_fps: float,
        target_fps_options: list[int],
        *,
        preview_seconds: float | None = None,
    ) -> m.Estimate:
        body: m.EstimateBody = {
            "duration_sec": duration_sec,
            "source_fps": source_fps,
            "target_fps_options": target_fps_options,
        }
        if preview_seconds is not None:
            body["preview_seconds"] = preview_seconds
        return await self._run(self._core.call(c.ESTIMATE, json=body))

    async def estimate_video(
        self, r2_key: str, target_fps_options: list[int], *, preview_seconds: float | None = None
    ) -> m.VideoEstimate:
        body: m.EstimateVideoBody = {"r2_key": r2_key, "target_fps_options": target_fps_options}
        if preview_seconds is not None:
            body["preview_seconds"] = preview_seconds
        return await self._run(self._core.call(c.ESTIMATE_VIDEO, json=body))

    # -- uploads and jobs -------------------------------------------------------------------

    async def presign(
        self, filename: str, content_type: str = "video/mp4", size_bytes: int | None = None
    ) -> m.PresignedUpload:
        body: m.PresignBody = {"filename": filename, "content_type": content_type}
        if size_bytes is not None:
            body["size_bytes"] = size_bytes
        return await self._run(self._core.call(c.PRESIGN, json=body))

    async def upload(
        self,
        path: str | Path,
        *,
        content_type: str | None = None,
        on_upload: c.UploadCallback | None = None,
    ) -> m.PresignedUpload:
        file = Path(path)
        presigned = await self.presign(
            file.name, content_type or c.guess_video_type(file), file.stat().st_size
        )
        await self._run(self._core.upload_file(presigned, file, on_upload))
        return presigned

    async def create_job(
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
        flow = self._core.create_job(
            r2_key,
            project_id,
            target_fps,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            preview=preview,
            output=output,
            playback_fps=playback_fps,
        )
        return await self._run(flow)

    async def get_job(self, job_id: str) -> m.Job:
        return await self._run(self._core.call(c.GET_JOB, {"job_id": job_id}))

    async def list_jobs(self, limit: int = 20, offset: int = 0) -> m.JobPage:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        return await self._run(self._core.call(c.LIST_JOBS, params=params))

    async def iter_jobs(self, page_size: int = 50) -> AsyncIterator[m.Job]:
        offset: int | None = 0
        while offset is not None:
            page = await self.list_jobs(limit=page_size, offset=offset)
            for job in page.items:
                yield job
            offset = page.next_offset

    async def cancel_job(self, job_id: str) -> m.Job:
        return await self._run(self._core.call(c.CANCEL_JOB, {"job_id": job_id}))

    async def wait(
        self,
        job_id: str,
        *,
        on_progress: c.JobCallback | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
    ) -> m.Job:
        flow = self._core.wait(
            job_id, on_progress=on_progress, poll_interval=poll_interval, timeout=timeout
        )
        return await self._run(flow)

    async def render(
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
        """See `Reframe.render`."""
        flow = self._core.render(
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
        return await self._run(flow)

    # -- projects, files, shares ------------------------------------------------------------

    async def list_projects(self, limit: int = 20, offset: int = 0) -> m.ProjectPage:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        return await self._run(self._core.call(c.LIST_PROJECTS, params=params))

    async def get_project(self, project_id: str) -> m.Project:
        return await self._run(self._core.call(c.GET_PROJECT, {"project_id": project_id}))

    async def file_download(self, project_id: str, file_id: str) -> m.Download:
        ids = {"project_id": project_id, "file_id": file_id}
        return await self._run(self._core.call(c.FILE_DOWNLOAD, ids))

    async def download(
        self, url: str, dest: str | Path, *, on_download: c.DownloadCallback | None = None
    ) -> Path:
        return await self._run(self._core.download(url, Path(dest), on_download))

    async def share(self, project_id: str) -> m.Share:
        return await self._run(self._core.call(c.CREATE_SHARE, {"project_id": project_id}))

    async def revoke_share(self, project_id: str) -> None:
        await self._run(self._core.call(c.REVOKE_SHARE, {"project_id": project_id}))

    async def get_share(self, token: str) -> m.SharedProject:
        return await self._run(self._core.call(c.GET_SHARE, {"token": token}))

    async def delete_project(self, project_id: str) -> None:
        await self._run(self._core.call(c.DELETE_PROJECT, {"project_id": project_id}))

    async def close_account(self, confirm_email: str) -> None:
        await self._run(self._core.call(c.CLOSE_ACCOUNT, params={"confirm": confirm_email}))


async def _chunks(source: c.FileChunks) -> AsyncIterator[bytes]:
    try:
        # Disk reads go to a thread so a slow disk never stalls the event loop.
        while chunk := await asyncio.to_thread(source.read):
            yield chunk
            source.sent_chunk(chunk)
    finally:
        source.close()
