"""The one place domain exceptions become HTTP responses. Every error body is {"detail": str}."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reframe.api.schemas import ErrorOut
from reframe.errors import RateLimited, ReframeError, Unauthorized

log = logging.getLogger("reframe.api")

INTERNAL_ERROR = (
    "Unexpected server error. Retry reads; if a write is unclear, check GET /jobs or "
    "GET /projects before repeating it, and contact support if it persists."
)

# For `responses=` on routes, so /openapi.json documents the error body per status.
ERROR_DESCRIPTIONS = {
    400: "Invalid request body or unsupported params",
    401: "Missing or invalid API key",
    402: "Insufficient xeconds balance",
    403: "The resource belongs to another account",
    404: "Project, job, file, or share token was not found",
    409: "The job already ended, so it cannot change any more",
    410: "The file's stored bytes were deleted after they expired",
    413: "Upload exceeds launch size or duration limits",
    429: "Too many requests for this API key; wait for Retry-After seconds",
    500: "Unexpected server error",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    return {
        code: {
            "model": ErrorOut,
            "description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"example": {"detail": ERROR_DESCRIPTIONS[code]}}},
        }
        for code in codes
    }


def _field_name(loc: tuple[object, ...]) -> str:
    # ("body", "target_fps") -> "target_fps"; ("query", "limit") -> "limit"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_detail(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        field = _field_name(tuple(err.get("loc", ())))
        # A validator's own ValueError message reads better without pydantic's prefix.
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            problems.append("request body is not valid JSON")
        elif err.get("type") == "missing":
            problems.append(f"{field}: field required")
        else:
            problems.append(f"{field}: {msg}")
    return "Invalid request: " + "; ".join(problems or ["malformed request"])


def rate_limited_response(exc: RateLimited) -> JSONResponse:
    """The one 429 body. Retry-After is rounded up: a client that waits exactly that long must
    find a token, and a rounded-down wait would be refused again."""
    return JSONResponse(
        {"detail": exc.message},
        status_code=429,
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
    )


async def _reframe_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ReframeError)
    if isinstance(exc, RateLimited):
        return rate_limited_response(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status_code >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_detail(exc)}, status_code=400)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(
        {"detail": detail}, status_code=exc.status_code, headers=dict(exc.headers or {})
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, never to the client: it can hold paths, SQL and secrets.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with the JSON 500 itself, and does not re-raise it.

    Starlette's own last-resort handler sends the 500 and then raises again, and uvicorn closes
    the socket of any request whose app raised: a keep-alive client's next request, already on
    its way over that pooled connection, is reset, and for a write it cannot tell whether it
    ran. Installed innermost among the middlewares, so the others see an ordinary 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:  # half an answer is out: only a dropped connection tells the client
                raise
            response = await _unexpected(Request(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    # First added is innermost: it must sit inside every other middleware (see its docstring).
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_exception_handler(ReframeError, _reframe_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
