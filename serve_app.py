"""Ray Serve entry point: `serve run serve_app:app` serves the Reframe API and runs the render
dispatcher next to it, so jobs accepted through the API render on the cluster.

Settings come from REFRAME_* in the environment of the replicas (read there, not at import),
secrets included (or REFRAME_SECRETS_DIR). `serve run serve_app:build key=value ...` overrides
settings by field name; a `serve deploy` config names `serve_app:app` (deploy/serve.yaml).
`reframe serve` starts the same application with the database migrated and a local Ray.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from reframe.serving import ReframeAPI, ReframeDispatcher, application


def build(args: dict[str, Any]) -> Application:
    return application(dict(args))


app: Application = application()

__all__ = ["ReframeAPI", "ReframeDispatcher", "app", "build"]
