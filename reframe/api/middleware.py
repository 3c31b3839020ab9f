"""ASGI middleware of the API: per-client rate limits (429 with Retry-After), and a cap on
request bodies (413, BodyLimitMiddleware).

Whose bucket a request spends from is decided here, before any route runs, so that no route
(log-in, sign-up, public pricing, share pages) is reached unlimited:

- a bearer key or studio session that is *verified* (looked up, read-only) spends its
  account's bucket, from whatever address it comes;
- anything else, a missing, malformed, unknown or revoked credential included, spends the
  bucket of the client's address (reframe.api.client_address: X-Forwarded-For only from
  trusted proxies). Keying by the credential as sent would give a fresh bucket to every
  made-up bearer.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reframe.api.client_address import TrustedProxies, client_address
from reframe.api.errors import rate_limited_response
from reframe.errors import RateLimited
from reframe.jobs.ratelimit import Kind, RequestLimits, put_bounded
from reframe.services import accounts, web_auth

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from reframe.metrics import ProcessMetrics

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# How long a credential's owner (or its absence) is remembered. Only the bucket's name depends
# on it, never access: a key revoked within this time is still refused by the route, it just
# goes on spending its account's bucket until then.
CREDENTIAL_TTL_SEC = 60.0


class RequestIdentity:
    """The bucket name of a request: `account:<id>` when its credential checks out, else
    `ip:<client address>`. Owners are cached per credential digest (LRU, bounded), so a
    polling client costs one lookup a minute, not one per request."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        trusted_proxies: TrustedProxies,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._trusted = trusted_proxies
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._owners: OrderedDict[str, tuple[str | None, float]] = OrderedDict()

    async def key(self, request: Request) -> str:
        credential = _credential(request)
        if credential is not None:
            account_id = await self._owner(*credential)
            if account_id is not None:
                return f"account:{account_id}"
        peer = request.client.host if request.client else ""
        return "ip:" + client_address(
            peer, request.headers.getlist("x-forwarded-for"), self._trusted
        )

    async def _owner(self, kind: str, secret: str) -> str | None:
        # Only a digest is kept: never the API key or session token itself.
        digest = hashlib.sha256(f"{kind}:{secret}".encode()).hexdigest()
        now = self._clock()
        with self._lock:
            cached = self._owners.get(digest)
            if cached is not None and cached[1] > now:
                self._owners.move_to_end(digest)
                return cached[0]
        try:
            owner = await run_in_threadpool(self._lookup, kind, secret)
        except SQLAlchemyError:
            return None  # the route will meet the same database and say so; the address pays
        with self._lock:
            put_bounded(self._owners, digest, (owner, now + CREDENTIAL_TTL_SEC), self._max_entries)
        return owner

    def _lookup(self, kind: str, secret: str) -> str | None:
        with self._sessions() as session:
            if kind == "key":
                return accounts.key_owner(session, secret)
            return web_auth.session_owner(session, secret)

    def size(self) -> int:
        return len(self._owners)


def _credential(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        # Not shaped like a key: no lookup, it can only be the address's request.
        return ("key", token) if token.startswith(accounts.KEY_PREFIX) else None
    cookie = request.cookies.get(web_auth.SESSION_COOKIE)
    return ("session", cookie) if cookie else None


class RateLimitMiddleware:
    """Spends a token per request before the app sees it; 429 with Retry-After when empty.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware costs a
    task and a stream per request, which shows on a hot polling path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: RequestLimits,
        identity: RequestIdentity,
        metrics: ProcessMetrics | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.identity = identity
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        kind: Kind = "read" if request.method in _SAFE_METHODS else "write"
        if self.limits.enabled(kind):
            try:
                # Awaited on the loop: a thread-pool hop per request cost more than the Redis
                # call. The owner lookup hops only when its cache misses.
                await self.limits.acheck(await self.identity.key(request), kind)
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
