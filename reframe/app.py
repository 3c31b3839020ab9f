"""The composition root of the web service: the API with the studio on it.

`reframe.api` knows nothing of the studio and `reframe.web` nothing of how it is served; this
module puts them together for every way the service runs (Ray Serve in reframe.serving, the
tests' in-process apps).
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from reframe.api.app import create_app
from reframe.config import Settings
from reframe.storage import Storage
from reframe.web import install as install_studio


def build_app(
    settings: Settings | None = None,
    *,
    storage: Storage | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """The API (reframe.api.app.create_app) with the studio's pages and assets."""
    app = create_app(settings, storage=storage, engine=engine)
    install_studio(app)
    return app
