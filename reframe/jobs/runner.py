"""The dispatcher at work: its loop in a thread, with everything it needs wired up.

`DispatcherRunner` is what the `ReframeDispatcher` Serve deployment (reframe.serving) holds,
next to the API, in `reframe serve` and in `serve run serve_app:app` alike. Serve restarts the
replica if its process dies; the new incarnation has a new owner id, so it adopts or retries the
old one's renders once their leases run out.

Renders are submitted as Ray jobs through the dashboard's job API when the cluster has one (so
operators see every render in the dashboard); otherwise, as on a Ray started without its
dashboard, as child processes of the replica that join the same cluster.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any, Literal

from reframe.config import Settings
from reframe.db import make_engine, make_sessionmaker
from reframe.jobs.dispatcher import Dispatcher, run_loop
from reframe.jobs.events import event_bus
from reframe.jobs.launchers import RayJobLauncher, RenderLauncher, SubprocessLauncher
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.metrics import RenderObserver
from reframe.jobs.progress import progress_store
from reframe.jobs.webhooks import WebhookSender
from reframe.metrics import ProcessMetrics
from reframe.pipeline.cluster import read_cluster_resources
from reframe.services.sweep import sweep
from reframe.storage import build_storage

log = logging.getLogger(__name__)

LauncherKind = Literal["auto", "ray-jobs", "subprocess"]


def dashboard_address() -> str | None:
    """The connected cluster's dashboard (job API) URL, or None when it runs without one.

    Read from where the dashboard publishes it (the GCS): in a worker process, such as a Serve
    replica, the node's own idea of the URL is Ray's default port, not the one it runs on.
    """
    from ray._private.services import get_webui_url_from_internal_kv

    try:
        url = get_webui_url_from_internal_kv()  # type: ignore[no-untyped-call]
    except Exception:  # not connected, or an internal that moved
        return None
    if not url:
        return None
    return str(url) if str(url).startswith("http") else f"http://{url}"


class DispatcherRunner:
    """Runs `run_loop` in a thread; its methods only report and stop."""

    def __init__(self, settings: Settings, *, launcher: LauncherKind = "auto") -> None:
        import ray

        self._engine = make_engine(settings.resolved_database_url)
        sessions = make_sessionmaker(self._engine)
        bus = event_bus(settings)
        lifecycle = JobLifecycle(sessions, bus=bus, progress=progress_store(settings))
        # Ray 2.60 enables token auth unless told otherwise; the mode this process runs with is
        # the cluster's, and it is handed on explicitly (see RayJobLauncher).
        auth_mode = os.environ.get("RAY_AUTH_MODE", "disabled")
        address = dashboard_address() if launcher != "subprocess" else None
        if launcher == "ray-jobs" and address is None:
            raise RuntimeError(
                "Ray runs without its dashboard, so renders cannot be submitted as Ray jobs; "
                "start Ray with its dashboard (include_dashboard=True / ray start's default)"
            )
        chosen: RenderLauncher
        if address is not None:
            chosen = RayJobLauncher(settings, address, auth_mode=auth_mode)
        else:
            # Point the renders at this cluster explicitly: "auto" could find another one on a
            # shared machine.
            gcs = ray.get_runtime_context().gcs_address
            chosen = SubprocessLauncher(
                settings, extra_env={"RAY_ADDRESS": gcs, "RAY_AUTH_MODE": auth_mode}
            )
        # Render histograms go to the multiprocess directory this replica was started with
        # (reframe.serving), where the API's scrape finds them (reframe.metrics).
        observer: RenderObserver | None
        try:
            observer = RenderObserver(sessions, ProcessMetrics())
        except OSError:  # an unwritable directory costs the histograms, never the renders
            log.exception("render metrics are off: the multiprocess directory is unusable")
            observer = None
        self.dispatcher = Dispatcher.from_settings(
            sessions,
            chosen,
            settings,
            capacity=1,
            lifecycle=lifecycle,
            resources=lambda: read_cluster_resources(settings.autoscaler_config),
            on_done=observer,
        )
        self.launcher_kind = "ray-jobs" if address is not None else "subprocess"
        self._stop = threading.Event()
        self._wake = bus.subscribe()
        self._thread = threading.Thread(
            target=run_loop,
            args=(self.dispatcher, self._stop),
            kwargs={
                "poll_sec": settings.dispatch_poll_sec,
                "wake": self._wake,
                "webhooks": WebhookSender.from_settings(sessions, settings),
                "sweep": functools.partial(sweep, sessions, build_storage(settings), settings),
                "sweep_interval_sec": settings.sweep_interval_sec,
            },
            name="reframe-dispatcher",
            daemon=True,
        )
        self._thread.start()
        log.info("dispatcher %s started (renders as %s)", self.dispatcher.owner, self.launcher_kind)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def ready(self) -> dict[str, Any]:
        planner = self.dispatcher.planner
        resources = planner.resources
        return {
            "owner": self.dispatcher.owner,
            "capacity": self.dispatcher.capacity,
            "launcher": self.launcher_kind,
            "gpu_slots": planner.gpu_slots,
            "cluster_gpus": resources.gpus if resources else None,
            "cluster_max_gpus": resources.max_gpus if resources else None,
            "pid": os.getpid(),
        }

    def running(self) -> dict[str, str]:
        return {job: att.submission_id for job, att in self.dispatcher.running.items()}

    def stop(self) -> None:
        """Stop the loop and give up this dispatcher's leases, so a successor adopts its
        renders at once instead of after the lease runs out."""
        self._stop.set()
        self._thread.join(timeout=30)
        self._wake.close()
        self.dispatcher.shutdown()
        self._engine.dispose()
