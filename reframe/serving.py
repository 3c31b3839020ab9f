"""The Ray Serve application of the service: the API (with the studio) and the dispatcher.

One application, two deployments: `ReframeAPI` (HTTP ingress, several replicas) and
`ReframeDispatcher` (one replica running the dispatcher loop: claims, leases, retries, webhook
delivery), bound to the API so that `serve run serve_app:app`, a `serve deploy` config and
`reframe serve` all start both. Renders themselves run as Ray jobs outside Serve, so
redeploying the application never interrupts one: the new dispatcher adopts them.

Nothing is read at import: the replicas build their settings (`reframe.config.load_settings`)
and everything else in their own processes. Deployment arguments never carry secrets; replicas
read those from their environment or REFRAME_SECRETS_DIR.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from reframe.app import build_app
from reframe.config import SECRETS_DIR_ENV, Settings, load_settings, public_values
from reframe.db import migrate
from reframe.jobs.runner import DispatcherRunner, LauncherKind
from reframe.metrics import multiprocess_env
from reframe.sched import prefer_this_process

# A quarter of a core: the replica mostly waits on the database and storage, and a 2-core
# machine must keep room for the render actors.
REPLICA_NUM_CPUS = 0.25
APP_NAME = "reframe"
DISPATCHER_APP_NAME = "reframe-dispatcher"


@serve.deployment(
    name="ReframeDispatcher",
    num_replicas=1,
    # It waits on the database and on Ray's job API; renders get the cores.
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=8,
    health_check_period_s=10,
)
class ReframeDispatcher:
    """Serve keeps one replica alive; more would be safe (claims are row-locked leases)."""

    def __init__(
        self, settings: dict[str, Any] | None = None, launcher: LauncherKind = "auto"
    ) -> None:

        config = load_settings(settings)
        config.log_setup().apply("dispatcher")
        migrate(config.resolved_database_url)
        self._runner = DispatcherRunner(config, launcher=launcher)

    def status(self) -> dict[str, Any]:
        """Who dispatches, with what capacity and what it sees of the cluster."""
        return self._runner.ready()

    def running(self) -> dict[str, str]:
        return self._runner.running()

    def check_health(self) -> None:
        # Serve replaces a replica whose check fails: a dead loop must not sit there idle.
        if not self._runner.alive:
            raise RuntimeError("the dispatcher loop has stopped")

    def __del__(self) -> None:
        # Serve calls this when it shuts the replica down (redeploy, `serve shutdown`).
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.stop()


@serve.deployment(
    name="ReframeAPI",
    num_replicas=1,
    ray_actor_options={"num_cpus": REPLICA_NUM_CPUS},
    max_ongoing_requests=64,
)
@serve.ingress()
class ReframeAPI:
    def __init__(self, settings: dict[str, Any] | None = None, dispatcher: Any = None) -> None:
        """`dispatcher` is the ReframeDispatcher's handle: binding it here is what makes the
        dispatcher part of the same application; the API itself never calls it."""

        # Explicit values from the launcher win; anything unset falls back to REFRAME_* env.
        self._settings = load_settings(settings)
        self._settings.log_setup().apply("api")
        if self._settings.process_priority:
            # Polls must not queue behind renders sharing this machine (see reframe.sched).
            prefer_this_process()
        # Idempotent, and makes `serve run serve_app:app` work on a fresh checkout.
        migrate(self._settings.resolved_database_url)

    def __serve_build_asgi_app__(self) -> FastAPI:

        return build_app(self._settings)


def _actor_options(
    num_cpus: float, settings: dict[str, Any] | None, secrets_dir: str | None
) -> dict[str, Any]:
    """Ray options of a replica: its CPUs, and the environment it must have before it starts
    (paths only, never values that are secret)."""

    env: dict[str, str] = {}
    if secrets_dir:
        env[SECRETS_DIR_ENV] = secrets_dir  # where this machine keeps the secret files
    if settings and settings.get("data_dir"):
        # Each replica writes its request metrics to the service's multiprocess directory, set
        # in its environment before it starts: prometheus-client reads it once, at import
        # (reframe.metrics). `serve run` without settings keeps them per replica.
        metrics_dir = Path(settings.get("metrics_dir") or Path(settings["data_dir"]) / "metrics")
        env.update(multiprocess_env(metrics_dir))
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options


def dispatcher_application(
    settings: dict[str, Any] | None = None,
    *,
    launcher: LauncherKind = "auto",
    secrets_dir: str | None = None,
) -> Application:
    deployment = ReframeDispatcher.options(  # type: ignore[attr-defined]
        ray_actor_options=_actor_options(0, settings, secrets_dir)
    )
    app: Application = deployment.bind(settings, launcher)
    return app


def application(
    settings: dict[str, Any] | None = None,
    *,
    dispatcher: bool = True,
    launcher: LauncherKind = "auto",
    secrets_dir: str | None = None,
) -> Application:
    """The bound application, ready for `serve.run`: the API, with the dispatcher unless
    `dispatcher=False` (an API on a Ray that renders elsewhere). `settings` must hold no
    secrets (reframe.config.public_values); `secrets_dir` is where replicas find them."""
    # Without explicit values (`serve run serve_app:app`) the Settings default applies, read
    # from the class rather than the environment: this runs at import of serve_app.

    default = Settings.model_fields["api_replicas"].default
    replicas = int((settings or {}).get("api_replicas") or default)
    deployment = ReframeAPI.options(  # type: ignore[attr-defined]
        num_replicas=replicas,
        ray_actor_options=_actor_options(REPLICA_NUM_CPUS, settings, secrets_dir),
    )
    bound = (
        dispatcher_application(settings, launcher=launcher, secrets_dir=secrets_dir)
        if dispatcher
        else None
    )
    app: Application = deployment.bind(settings, bound)
    return app


def start_dispatcher(
    settings: Settings, *, launcher: LauncherKind = "auto"
) -> tuple[Any, Callable[[], None]]:
    """Run the dispatcher alone as a Serve application on the connected Ray (tests, and a Ray
    that serves no API); returns (its handle, how to stop it)."""

    started = not _serve_running()
    if started:
        serve.start(proxy_location="Disabled")  # no HTTP: nothing here is served over it
    handle = serve.run(
        dispatcher_application(public_values(settings), launcher=launcher),
        name=DISPATCHER_APP_NAME,
        route_prefix=None,
    )

    def stop() -> None:
        serve.delete(DISPATCHER_APP_NAME)
        if started:  # leave no Serve behind that a later `serve.start` would have to join
            serve.shutdown()  # type: ignore[no-untyped-call]

    return handle, stop


def _serve_running() -> bool:
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True
