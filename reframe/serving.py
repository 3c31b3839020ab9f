"""The Ray Serve deployments of the service. Entry points: serve_app.py and `reframe serve`.

The app is built inside the replica (`__serve_build_asgi_app__`), not at import: importing this
module reads no settings and opens no database.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

# A quarter of a core: the replica mostly waits on the database and storage, and a 2-core
# machine must keep room for the render actors.
REPLICA_NUM_CPUS = 0.25


@serve.deployment(
    name="ReframeAPI",
    num_replicas=1,
    ray_actor_options={"num_cpus": REPLICA_NUM_CPUS},
    max_ongoing_requests=64,
)
@serve.ingress()
class ReframeAPI:
    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        from reframe.config import Settings
        from reframe.db import migrate
        from reframe.sched import prefer_this_process

        # Explicit values from the launcher win; anything unset falls back to REFRAME_* env.
        self._settings = Settings(**(settings or {}))
        if self._settings.process_priority:
            # Polls must not queue behind renders sharing this machine (see reframe.sched).
            prefer_this_process()
        # Idempotent, and makes `serve run serve_app:app` work on a fresh checkout.
        migrate(self._settings.resolved_database_url)

    def __serve_build_asgi_app__(self) -> FastAPI:
        from reframe.app import build_app

        return build_app(self._settings)


def application(settings: dict[str, Any] | None = None) -> Application:
    """The bound deployment, ready for `serve.run`."""
    # Without explicit values (`serve run serve_app:app`) the Settings default applies, read
    # from the class rather than the environment: this runs at import of serve_app.
    from reframe.config import Settings

    default = Settings.model_fields["api_replicas"].default
    replicas = int((settings or {}).get("api_replicas") or default)
    deployment = ReframeAPI.options(num_replicas=replicas)  # type: ignore[attr-defined]
    app: Application = deployment.bind(settings)
    return app
