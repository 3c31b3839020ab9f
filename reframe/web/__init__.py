"""Reframe Studio: the web dashboard and the public share page, served by the API's app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi.staticfiles import StaticFiles

from reframe.web.routes import STATIC_DIR, router

if TYPE_CHECKING:
    from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Add the studio's pages and its static files (CSS, JS; all local, no CDN) to `app`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
