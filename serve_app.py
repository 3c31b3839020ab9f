"""Ray Serve entry point: `serve run serve_app:app` serves the Reframe API.

Settings come from REFRAME_* in the environment (read inside the replica, not at import).
`serve run serve_app:build key=value ...` overrides settings by field name. `reframe serve`
starts the same deployment with the database migrated and a local Ray.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from reframe.serving import ReframeAPI, application


def build(args: dict[str, Any]) -> Application:
    return application(dict(args))


app: Application = application()

__all__ = ["ReframeAPI", "app", "build"]
