"""ASGI middleware of the API: per-client rate limits (429 with Retry-After) and a cap on
request bodies (413)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reframe.api.errors import rate_limited_response
from reframe.errors import RateLimited
from reframe.jobs.ratelimit import Kind, RequestLimits

if TYPE_CHECKING:
    from reframe.metrics import ProcessMetrics

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _client_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and len(auth) > 7:
        # Only a digest is kept in the limiter's keys: never the API key itself.
        return "key:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()[:32]
    host = request.client.host if request.client else "unknown"
    return f"ip:{host}"


class RateLimitMiddleware:
    """Spends a token per request before the app sees it; 429 with Retry-After when empty.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware costs a
    task and a stream per request, which shows on a hot polling path.
    """

    def __init__(
        self, app: ASGIApp, *, limits: RequestLimits, metrics: ProcessMetrics | None = None
    ) -> None:
        self.app = app
        self.limits = limits
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        kind: Kind = "read" if request.method in _SAFE_METHODS else "write"
        try:
            # Awaited on the loop: a thread-pool hop per request cost more than the Redis call.
            await self.limits.acheck(_client_key(request), kind)
        except RateLimited as exc:
            if self.metrics is not None:
                self.metrics.rate_limit_refusals.labels(kind).inc()
            await rate_limited_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# The local storage backend's object route streams videos; its signed URL caps the size.
_STREAMING_PREFIX = "/storage/"


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413 {"detail"} on every route but the
    storage PUT: from Content-Length before a byte is read, else as soon as the streamed body
    passes the limit (a chunked body declares nothing), so a client cannot make the API buffer
    megabytes of JSON or form data."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return (
            f"request body exceeds the {self.max_bytes}-byte limit of this endpoint; "
            "send the video itself to the upload_url from POST /upload/presign"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_STREAMING_PREFIX):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app's body read: FastAPI passes HTTPExceptions on to
                    # the app's handler, which answers {"detail"} like every other error.
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        from fastapi.responses import JSONResponse

        # Connection: close, so the server does not try to read the unread body as the next
        # request on this connection.
        response = JSONResponse(
            {"detail": self._too_large()}, status_code=413, headers={"Connection": "close"}
        )
        await response(scope, receive, send)
