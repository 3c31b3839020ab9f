"""The local backend's object endpoints: `PUT` and `GET` on signed URLs under `/storage/{key}`.

These stand in for S3 when `REFRAME_STORAGE_BACKEND=local`, so they behave like it: a signature
that does not verify (altered, expired, meant for another method, or absent) is 403, not 401,
because no API key is involved and sending one would not help; a missing object is 404; an
upload over the URL's signed size is 413 and leaves nothing behind. Errors are JSON
`{"detail": ...}` like the rest of the API.

The app factory sets `app.state.storage` (and `app.state.settings`); the routes read them from
there so this router carries no global state.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from reframe.errors import Forbidden, NotFound, ReframeError, TooLarge
from reframe.services import shares, uploads
from reframe.storage.base import served_content_type
from reframe.storage.local import LocalStorage

router = APIRouter(prefix="/storage", tags=["storage"])

# Socket reads are small; batching them before each hop to the worker thread keeps disk writes
# off the event loop without a thread hop per 64 KiB.
_WRITE_BATCH = 1024 * 1024

_ERRORS: dict[int | str, dict[str, object]] = {
    403: {"description": "Signature invalid, expired, or for another method"},
    404: {"description": "No object under this key"},
    413: {"description": "Upload larger than the URL allows"},
}
_PUT_ERRORS: dict[int | str, dict[str, object]] = {
    **_ERRORS,
    409: {"description": "The upload was already verified (or rejected); presign a new one"},
}


async def get_local_storage(request: Request) -> LocalStorage:
    storage = getattr(request.app.state, "storage", None)
    if not isinstance(storage, LocalStorage):
        # With the S3 backend clients talk to S3 directly; these URLs are never handed out.
        raise HTTPException(
            status_code=404,
            detail="storage URLs are served by the API only with the local storage backend",
        )
    return storage


LocalStorageDep = Annotated[LocalStorage, Depends(get_local_storage)]


def _error(exc: ReframeError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code)


@router.put("/{key:path}", responses=_PUT_ERRORS, summary="Upload an object to a signed URL")
async def put_object(key: str, request: Request, storage: LocalStorageDep) -> Response:
    try:
        grant = storage.verify("PUT", key, request.query_params)
        if grant.content_type is not None:
            sent = request.headers.get("content-type", "")
            if sent.split(";", 1)[0].strip().lower() != grant.content_type.lower():
                raise Forbidden(
                    f"this upload URL was signed for 'Content-Type: {grant.content_type}'; "
                    "send exactly that header"
                )
        limit = grant.max_bytes
        declared = request.headers.get("content-length")
        # Refuse before reading a byte when the client already said it will send too much.
        if limit is not None and declared and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"upload of {declared} bytes exceeds the {limit}-byte limit of this URL")
        await anyio.to_thread.run_sync(_check_writable, request, key)
        upload = storage.open_upload(key, limit)
        try:
            pending: list[bytes] = []
            pending_size = received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if limit is not None and received > limit:
                    # Stop reading at once: the rest of the body is never pulled off the socket.
                    raise TooLarge(
                        f"upload exceeds the {limit}-byte limit of this upload URL; "
                        "upload a smaller file"
                    )
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BATCH:
                    await anyio.to_thread.run_sync(upload.write, b"".join(pending))
                    pending, pending_size = [], 0
            if pending:
                await anyio.to_thread.run_sync(upload.write, b"".join(pending))
            # Again at the end: the upload may have been verified while the bytes came in.
            await anyio.to_thread.run_sync(_check_writable, request, key)
            size = await anyio.to_thread.run_sync(upload.commit)
        finally:
            upload.abort()
    except ReframeError as exc:
        return _error(exc)
    return JSONResponse({"key": key, "size_bytes": size})


# HEAD shares the handler (FileResponse then sends headers only) but stays out of the schema,
# where a second operation for one function would duplicate its operation id.
@router.head("/{key:path}", include_in_schema=False)
@router.get(
    "/{key:path}",
    responses=_ERRORS,
    summary="Download an object from a signed URL",
    response_class=FileResponse,
)
async def get_object(key: str, request: Request, storage: LocalStorageDep) -> Response:
    try:
        grant = storage.verify(request.method, key, request.query_params)
        path = storage.path_for(key)
        # Missing bytes first: a project deleted by its owner took its share links and its
        # bytes with it, and that is a 404 whichever URL is used; a revoked link is a 403.
        if not path.is_file():
            raise NotFound(f"no object is stored under {key!r}")
        if grant.bound_to is not None and not await anyio.to_thread.run_sync(
            _share_is_live, request, grant.bound_to
        ):
            raise Forbidden(
                "the share link that issued this URL was revoked; ask its owner for a new link"
            )
    except ReframeError as exc:
        return _error(exc)
    # These bytes come from a client and are served on the API's own origin, so the response
    # can only be a download or a video: the type is the one the app verified (never guessed
    # from the key), browsers may not sniff another, and a document opened from it anyway
    # runs sandboxed, without the origin's cookies or scripts.
    # FileResponse answers Range requests (206 / 416), which browsers need to seek in a video.
    return FileResponse(
        path,
        media_type=served_content_type(grant.content_type, key),
        filename=grant.filename or path.name,
        content_disposition_type="inline" if grant.inline else "attachment",
        headers=_INERT_HEADERS,
    )


_INERT_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def _check_writable(request: Request, key: str) -> None:
    # The storage router mounted on its own (no database) has no upload rows to seal.
    sessions = getattr(request.app.state, "read_sessionmaker", None)
    if sessions is None:
        return
    with sessions() as session:
        uploads.check_writable(session, key)


def _share_is_live(request: Request, share_id: str) -> bool:
    with request.app.state.read_sessionmaker() as session:
        return shares.is_live(session, share_id)
