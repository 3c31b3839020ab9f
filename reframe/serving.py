"""The Ray Serve deployments of the service. Entry points: serve_app.py and `reframe serve`.

The app is built inside the replica (`__serve_build_asgi_app__`), not at import: importing this
module reads no settings and opens no database.
"""

from __future__ import annotations

from pathlib import Path
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
        self._settings.log_setup().apply("api")
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
    from reframe.metrics import multiprocess_env

    default = Settings.model_fields["api_replicas"].default
    replicas = int((settings or {}).get("api_replicas") or default)
    options: dict[str, Any] = {"num_cpus": REPLICA_NUM_CPUS}
    if settings and settings.get("data_dir"):
        # Each replica writes its request metrics to the service's multiprocess directory, set
        # in its environment before it starts: prometheus-client reads it once, at import
        # (reframe.metrics). `serve run` without settings keeps them per replica.
        metrics_dir = Path(settings.get("metrics_dir") or Path(settings["data_dir"]) / "metrics")
        options["runtime_env"] = {"env_vars": multiprocess_env(metrics_dir)}
    deployment = ReframeAPI.options(  # type: ignore[attr-defined]
        num_replicas=replicas, ray_actor_options=options
    )
    app: Application = deployment.bind(settings)
    return app
