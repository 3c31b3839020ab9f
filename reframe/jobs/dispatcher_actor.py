"""The dispatcher as a long-lived Ray actor, started by `reframe serve` next to the API.

The actor restarts by itself if its process dies (`max_restarts=-1`); the new incarnation has a
new owner id, so it adopts or retries the old one's renders once their leases run out.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from reframe.config import Settings
from reframe.sched import available_cpus

log = logging.getLogger(__name__)

ACTOR_NAME = "reframe-dispatcher"


def default_capacity(resources: dict[str, float]) -> int:
    """Renders at once when not configured: one per GPU, else one per CPU."""
    gpus = int(resources.get("GPU", 0))
    if gpus > 0:
        return gpus
    return max(1, int(resources.get("CPU", 0)) or available_cpus())


class DispatcherActor:
    """Runs `run_loop` in a thread; its methods only report and stop."""

    def __init__(
        self,
        settings_values: dict[str, Any],
        *,
        capacity: int,
        dashboard_address: str | None,
        ray_auth_mode: str,
    ) -> None:
        from reframe.db import make_engine, make_sessionmaker
        from reframe.jobs.dispatcher import Dispatcher, run_loop
        from reframe.jobs.events import event_bus
        from reframe.jobs.launchers import RayJobLauncher, RenderLauncher, SubprocessLauncher
        from reframe.jobs.lifecycle import JobLifecycle
        from reframe.jobs.metrics import RenderObserver
        from reframe.jobs.progress import progress_store
        from reframe.jobs.webhooks import WebhookSender
        from reframe.metrics import ProcessMetrics

        settings = Settings(**settings_values)
        settings.log_setup().apply("dispatcher")
        self._engine = make_engine(settings.resolved_database_url)
        sessions = make_sessionmaker(self._engine)
        bus = event_bus(settings)
        lifecycle = JobLifecycle(sessions, bus=bus, progress=progress_store(settings))
        launcher: RenderLauncher
        if dashboard_address:
            launcher = RayJobLauncher(settings, dashboard_address, auth_mode=ray_auth_mode)
        else:
            import ray

            # Point the renders at this cluster explicitly: "auto" could find another one
            # on a shared machine.
            gcs = ray.get_runtime_context().gcs_address
            launcher = SubprocessLauncher(
                settings, extra_env={"RAY_ADDRESS": gcs, "RAY_AUTH_MODE": ray_auth_mode}
            )
        # Render histograms go to the multiprocess directory this actor was started with
        # (start_dispatcher), where the API's scrape finds them (reframe.metrics).
        observer: RenderObserver | None
        try:
            observer = RenderObserver(sessions, ProcessMetrics())
        except OSError:  # an unwritable directory costs the histograms, never the renders
            log.exception("render metrics are off: the multiprocess directory is unusable")
            observer = None
        self.dispatcher = Dispatcher.from_settings(
            sessions, launcher, settings, capacity=capacity, lifecycle=lifecycle, on_done=observer
        )
        self._stop = threading.Event()
        self._wake = bus.subscribe()
        self._thread = threading.Thread(
            target=run_loop,
            args=(self.dispatcher, self._stop),
            kwargs={
                "poll_sec": settings.dispatch_poll_sec,
                "wake": self._wake,
                "webhooks": WebhookSender.from_settings(sessions, settings),
            },
            name="reframe-dispatcher",
            daemon=True,
        )
        self._thread.start()

    def ready(self) -> dict[str, Any]:
        return {
            "owner": self.dispatcher.owner,
            "capacity": self.dispatcher.capacity,
            "pid": os.getpid(),
        }

    def running(self) -> dict[str, str]:
        return {job: att.submission_id for job, att in self.dispatcher.running.items()}

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._wake.close()
        self.dispatcher.shutdown()
        self._engine.dispose()


def start_dispatcher(settings: Settings, *, use_ray_jobs: bool = True) -> Callable[[], None]:
    """Start the dispatcher actor on the connected Ray; returns how to stop it.

    `use_ray_jobs` submits renders through the Ray dashboard's job API (Ray must run with its
    dashboard); otherwise the actor runs them as child processes.
    """
    import ray
    from ray._private.worker import get_dashboard_url

    from reframe.metrics import multiprocess_env

    capacity = settings.max_concurrent_renders or default_capacity(ray.cluster_resources())  # type: ignore[no-untyped-call]
    address = None
    if use_ray_jobs:
        url = get_dashboard_url()  # type: ignore[no-untyped-call]
        if not url:
            raise RuntimeError(
                "Ray runs without its dashboard, so renders cannot be submitted as Ray jobs; "
                "start Ray with include_dashboard=True"
            )
        address = url if url.startswith("http") else f"http://{url}"
    # Ray 2.60 enables token auth unless told otherwise; the mode this process runs with is the
    # cluster's, and it is handed on explicitly (see RayJobLauncher).
    auth_mode = os.environ.get("RAY_AUTH_MODE", "disabled")
    # Ray's partial type hints do not follow `.options().remote()`; the handle is untyped.
    actor_cls: Any = ray.remote(DispatcherActor)
    actor: Any = actor_cls.options(
        name=ACTOR_NAME,
        num_cpus=0,
        max_restarts=-1,
        max_concurrency=4,
        runtime_env={
            "env_vars": {
                "RAY_AUTH_MODE": auth_mode,
                **multiprocess_env(settings.resolved_metrics_dir),
            }
        },
    ).remote(
        settings.model_dump(mode="json"),
        capacity=capacity,
        dashboard_address=address,
        ray_auth_mode=auth_mode,
    )
    info = ray.get(actor.ready.remote(), timeout=300)
    log.info("dispatcher %s started (capacity %s)", info["owner"], info["capacity"])

    def stop() -> None:
        try:
            ray.get(actor.shutdown.remote(), timeout=60)
        finally:
            ray.kill(actor, no_restart=True)

    return stop
