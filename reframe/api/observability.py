"""Request ids, access log lines and HTTP metrics for every request, and `GET /metrics`.

`ObservabilityMiddleware` is the outermost of the API's own middleware, so it also sees the
429s of the rate limiter. Routes are labelled by their template (`/jobs/{job_id}`), never by
the raw path: one series per route, and no job ids or tokens in metric labels.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reframe.errors import Forbidden, Unauthorized
from reframe.jobs.metrics import DatabaseCollector
from reframe.logs import REQUEST_ID_HEADER, accept_request_id, bound
from reframe.metrics import CONTENT_TYPE, ProcessMetrics, exposition

if TYPE_CHECKING:
    from fastapi import FastAPI

access_log = logging.getLogger("reframe.access")

UNMATCHED_ROUTE = "unmatched"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")


def route_template(app: FastAPI, scope: Scope) -> str:
    """The template of the route that served (or would have served) this request."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    # Answered before routing (a 429 from the rate limiter): find the route it was for.
    for candidate in app.router.routes:
        match, _ = candidate.matches(scope)
        if match is not Match.FULL:
            continue
        if getattr(candidate, "path", None):
            return str(candidate.path)  # type: ignore[attr-defined]
        return _included_route_template(candidate, scope) or UNMATCHED_ROUTE
    return UNMATCHED_ROUTE


def _included_route_template(router: object, scope: Scope) -> str | None:
    # FastAPI keeps an included router's routes inside it, each with its full template and
    # regex; only its own routing reads them, so they are looked up defensively here.
    contexts = getattr(router, "effective_route_contexts", None)
    if contexts is None:
        return None
    path, method = str(scope.get("path", "")), str(scope.get("method", ""))
    for context in contexts():
        regex = getattr(context, "path_regex", None)
        methods = getattr(context, "methods", None) or set()
        if regex is not None and regex.match(path) and (not methods or method in methods):
            return str(context.path_format)
    return None


class ObservabilityMiddleware:
    """Plain ASGI (like RateLimitMiddleware): the polling path pays for no extra task."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, metrics: ProcessMetrics) -> None:
        self.app = app
        self.api = api
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or ()).get(_HEADER_KEY)
        request_id = accept_request_id(incoming.decode("latin-1") if incoming else None)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        with bound(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = str(scope.get("method", ""))
        route = route_template(self.api, scope)
        labels = (method, route, str(status))
        self.metrics.http_requests.labels(*labels).inc()
        self.metrics.http_duration.labels(*labels).observe(seconds)
        query = scope.get("query_string", b"").decode("latin-1")
        path = str(scope.get("path", "")) + (f"?{query}" if query else "")
        # The path may hold a signed URL's signature or a share token: the log formatter
        # redacts them (reframe.logs), so the line still says which object was asked for.
        access_log.info(
            "%s %s %d %.1f ms",
            method,
            path,
            status,
            seconds * 1000,
            extra={
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format: the database's numbers and every process's own (reframe.metrics)."""
    settings = request.app.state.settings
    if not settings.metrics_token and settings.exposed:
        # Job counts and xeconds are the business's numbers: never open to the internet.
        raise Forbidden(
            "GET /metrics is off on a service others can reach until REFRAME_METRICS_TOKEN is "
            "set; then scrape it with 'Authorization: Bearer <REFRAME_METRICS_TOKEN>'."
        )
    if settings.metrics_token:
        auth = request.headers.get("authorization", "")
        presented = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(presented.encode(), settings.metrics_token.encode()):
            raise Unauthorized(
                "GET /metrics needs 'Authorization: Bearer <REFRAME_METRICS_TOKEN>'."
            )
    body = exposition(
        request.app.state.metrics,
        multiprocess_dir=settings.resolved_metrics_dir,
        collectors=[DatabaseCollector(request.app.state.read_sessionmaker)],
    )
    return Response(body, media_type=CONTENT_TYPE)
