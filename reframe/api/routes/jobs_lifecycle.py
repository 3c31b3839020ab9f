"""The job lifecycle's HTTP surface: cancel, live progress on polls, per-key rate limits.

`install(app)` wires it into an app built by reframe.api.app.create_app: the cancel route,
the live-progress store, and the rate-limit middleware (429 with Retry-After).
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from reframe.api.deps import CurrentAccount, SessionDep, SettingsDep, StorageDep
from reframe.api.errors import error_responses
from reframe.api.presenters import job_public
from reframe.api.schemas import JobPublic
from reframe.config import Settings
from reframe.errors import RateLimited
from reframe.jobs.events import event_bus
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.progress import ProgressStore, progress_store
from reframe.jobs.ratelimit import Kind, RequestLimits
from reframe.services import projects

router = APIRouter(prefix="/jobs", tags=["jobs"])

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_lifecycle(request: Request) -> JobLifecycle:
    life: JobLifecycle = request.app.state.lifecycle
    return life


LifecycleDep = Annotated[JobLifecycle, Depends(get_lifecycle)]


def with_live_progress(request: Request, out: JobPublic) -> JobPublic:
    """Overlay the live store's newer progress on a job read from the database."""
    store: ProgressStore | None = getattr(request.app.state, "progress", None)
    if store is None or out.live_status.value != "processing":
        return out
    live = store.get(out.job_id)
    # The row is written at most every few seconds; the store on every chunk. A retry clears
    # the store, so an entry behind the row can only be stale.
    if live is None or (out.frames_done is not None and live.frames_done < out.frames_done):
        return out
    return out.model_copy(
        update={
            "progress": live.progress,
            "frames_done": live.frames_done,
            "frames_total": live.frames_total or out.frames_total,
            "eta_sec": live.eta_sec,
        }
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    summary="Cancel a queued or running render",
    description=(
        "Stops the render and sets `live_status` to `cancelled`. Before any frame is rendered "
        "(queued, no_workers, cold_start) the whole charge is refunded; while processing, the "
        "share of the frames not yet rendered is refunded (`refunded_xeconds`). Cancelling a "
        "job that already ended returns 409."
    ),
    responses=error_responses(401, 403, 404, 409, 500),
)
def cancel_job(
    job_id: str,
    request: Request,
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    lifecycle: LifecycleDep,
) -> JobPublic:
    projects.owned_job(session, account, job_id)  # 404 / 403 with the service's messages
    account_id = account.id
    # End the request's transaction before the lifecycle takes the job's lock in its own: on
    # SQLite an open transaction here would hold the database write lock against it. (Reading
    # `account.id` after the rollback would open one again, hence the copy above.)
    session.rollback()
    lifecycle.cancel(job_id, account_id)
    session.expire_all()
    return job_public(projects.owned_job(session, account, job_id), storage, settings)


def _client_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and len(auth) > 7:
        # Only a digest is kept in the limiter's keys: never the API key itself.
        return "key:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()[:32]
    host = request.client.host if request.client else "unknown"
    return f"ip:{host}"


def install(app: FastAPI, settings: Settings) -> None:
    """Add the lifecycle's routes, stores and rate limits to `app`."""
    store = progress_store(settings)
    app.state.progress = store
    app.state.lifecycle = JobLifecycle(
        app.state.sessionmaker, bus=event_bus(settings), progress=store
    )
    limits = RequestLimits.from_settings(settings)
    app.state.rate_limits = limits
    app.include_router(router)

    app.add_middleware(RateLimitMiddleware, limits=limits)


class RateLimitMiddleware:
    """Spends a token per request before the app sees it; 429 with Retry-After when empty.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware costs a
    task and a stream per request, which shows on a hot polling path.
    """

    def __init__(self, app: ASGIApp, *, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

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
            response = JSONResponse(
                {"detail": exc.message},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
