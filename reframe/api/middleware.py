"""ASGI middleware of the API: per-client rate limits (429 with Retry-After)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

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
