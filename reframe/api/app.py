"""The FastAPI application factory. Everything the app needs is built here, per app instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Engine

from reframe.api.errors import ERROR_DESCRIPTIONS, error_responses, install_error_handlers
from reframe.api.middleware import BodyLimitMiddleware, RateLimitMiddleware, RequestIdentity
from reframe.api.observability import ObservabilityMiddleware
from reframe.api.observability import router as metrics_router
from reframe.api.routes import jobs, me, pricing, projects, share, uploads
from reframe.api.routes import storage as storage_routes
from reframe.config import Settings, get_settings
from reframe.db.session import make_engine, make_sessionmaker
from reframe.jobs.events import event_bus
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.progress import progress_store
from reframe.jobs.ratelimit import RequestLimits, login_throttle
from reframe.metrics import ProcessMetrics
from reframe.storage import build_storage
from reframe.storage.base import Storage

API_DESCRIPTION = """
Render smoother video: upload a clip straight to storage, estimate the charged xeconds, start a
render, poll it until it is `done` or `failed`, download the output and share a review link.

Protected endpoints need `Authorization: Bearer <your_api_key>`. Public endpoints are
`/pricing/config`, `/pricing/estimate` and `/share/{token}`. Every error is JSON
`{"detail": "..."}`.
"""


class HealthOut(BaseModel):
    status: str


def create_app(
    settings: Settings | None = None,
    *,
    storage: Storage | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """Build the API (without the studio: reframe.app.build_app composes both). `storage` and
    `engine` default to what `settings` describes.

    The database must already be migrated (reframe.db.migrate): the app never changes schema.
    """

    settings = settings or get_settings()
    own_engine = engine is None
    db_engine = engine or make_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if own_engine:
            db_engine.dispose()

    app = FastAPI(
        title="Reframe API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.storage = storage or build_storage(settings)
    app.state.engine = db_engine
    app.state.sessionmaker = make_sessionmaker(db_engine)
    app.state.read_sessionmaker = make_sessionmaker(db_engine, read_mostly=True)

    # Live progress for polls, and the job lifecycle for cancels: with Redis shared by every
    # replica and render driver; without it, this process's own.
    app.state.progress = progress_store(settings)
    app.state.lifecycle = JobLifecycle(
        app.state.sessionmaker, bus=event_bus(settings), progress=app.state.progress
    )
    app.state.metrics = ProcessMetrics()
    app.state.rate_limits = RequestLimits.from_settings(settings)
    app.state.login_throttle = login_throttle(settings)
    install_error_handlers(app)  # before the middlewares below: its own one is innermost
    app.state.request_identity = RequestIdentity(
        app.state.read_sessionmaker,
        settings.trusted_proxy_networks,
        max_entries=settings.rate_limit_max_keys,
    )
    app.add_middleware(
        RateLimitMiddleware,
        limits=app.state.rate_limits,
        identity=app.state.request_identity,
        metrics=app.state.metrics,
    )
    # Outside the rate limiter (added later, runs earlier): a body over the cap is refused
    # from its headers alone, before any other work.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_json_body_bytes)
    # Added last, so it runs first: it sees the rate limiter's 429s, and binds the request id
    # before anything logs.
    app.add_middleware(ObservabilityMiddleware, api=app, metrics=app.state.metrics)

    for router in (me.router, pricing.router, uploads.router, jobs.router, projects.router):
        app.include_router(router)
    app.include_router(share.router)
    app.include_router(metrics_router)
    if settings.storage_backend == "local":
        app.include_router(storage_routes.router)

    @app.get(
        "/healthz",
        response_model=HealthOut,
        tags=["meta"],
        summary="Liveness check",
        responses=error_responses(500),
    )
    def healthz() -> HealthOut:
        return HealthOut(status="ok")

    _document_errors_as_served(app)
    return app


def _document_errors_as_served(app: FastAPI) -> None:
    """Make /openapi.json say what the API does: validation failures are 400 {"detail"}.

    FastAPI documents its default 422 with a list-shaped body; our handler answers 400 with
    the same ErrorOut body as every other error, so the document is rewritten to match.
    """
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        error_ref = {"$ref": "#/components/schemas/ErrorOut"}
        error_body = {"application/json": {"schema": error_ref}}
        for ops in spec.get("paths", {}).values():
            for op in ops.values():
                responses = op.get("responses", {})
                if responses.pop("422", None) is not None and "400" not in responses:
                    responses["400"] = {"description": ERROR_DESCRIPTIONS[400]}
                # The rate limit is a middleware in front of every route, and any route can
                # fail: both answers are possible everywhere, so they are documented everywhere.
                responses.setdefault("429", {"description": ERROR_DESCRIPTIONS[429]})
                responses["429"]["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before the next request",
                        "schema": {"type": "integer"},
                    }
                }
                responses.setdefault("500", {"description": ERROR_DESCRIPTIONS[500]})
                for code, response in responses.items():
                    if code.startswith(("4", "5")):
                        response.setdefault("content", error_body)
        schemas = spec.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
