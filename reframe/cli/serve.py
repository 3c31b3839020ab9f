"""`reframe serve [--host H] [--port P]`: migrate, start a local Ray, serve the API, block.

`start_service` does the work and returns a handle, so tests and other launchers can start the
same thing without blocking.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reframe.config import Settings

SERVE_APP_NAME = "reframe"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="start the API on a local Ray (Ray Serve) and block until Ctrl-C",
        description=(
            "Migrate the database, start a local Ray runtime, and serve the Reframe API with "
            "Ray Serve. Configuration comes from REFRAME_* environment variables."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.set_defaults(handler=_serve)


@dataclass
class RunningService:
    url: str
    settings: Settings
    started_ray: bool
    stop_hooks: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        from ray import serve

        for hook in reversed(self.stop_hooks):
            hook()
        serve.delete(SERVE_APP_NAME)
        serve.shutdown()  # type: ignore[no-untyped-call]
        if self.started_ray:
            import ray

            ray.shutdown()


def settings_for(host: str, port: int) -> Settings:
    """Settings from the environment; the public URL follows --host/--port unless set."""
    from reframe.config import Settings

    if os.environ.get("REFRAME_PUBLIC_BASE_URL"):
        return Settings()
    # 0.0.0.0 is where we listen, not an address a client can use; the URL goes into signed
    # upload links, so it must be one that reaches us.
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    return Settings(public_base_url=f"http://{shown}:{port}")


# Ray's dashboard agent serves the job API on this fixed port; a second local Ray on the
# machine cannot take it, and then no render could ever be submitted.
RAY_AGENT_PORT = 52365


def check_local_ray_ports(port: int = RAY_AGENT_PORT) -> None:
    """Refuse to start a local Ray whose job agent could not listen (renders would wait forever)."""
    import socket

    from reframe.errors import Conflict

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Ray's own server does: sockets left in TIME_WAIT by a stopped Ray do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as exc:
            raise Conflict(
                f"port {port}, where Ray's job agent listens, is taken ({exc.strerror}): another "
                "Ray is probably running on this machine. Stop it (`ray stop`), or serve on it "
                "with RAY_ADDRESS=auto."
            ) from exc


def start_background_services(settings: Settings) -> list[Callable[[], None]]:
    """Start what runs next to the API in the same Ray; return how to stop each.

    The job lifecycle's dispatcher (claims queued jobs, submits each render as a Ray job,
    reaps lost leases) runs as a Ray actor: reframe.jobs.dispatcher_actor.
    """
    from reframe.jobs.dispatcher_actor import start_dispatcher

    return [start_dispatcher(settings)]


def start_service(
    settings: Settings, host: str, port: int, *, background: bool = True
) -> RunningService:
    """Serve the API on Ray (starting a local Ray unless one is running).

    `background=False` serves the API alone, without start_background_services: for a Ray that
    was started elsewhere (a test session's) and cannot host the dispatcher.
    """
    import ray
    from ray import serve

    from reframe.db import migrate
    from reframe.metrics import reset_multiprocess_dir
    from reframe.sched import available_cpus
    from reframe.serving import application

    migrate(settings.resolved_database_url)
    settings.resolved_storage_dir.mkdir(parents=True, exist_ok=True)
    # Before the replicas and the dispatcher start writing there (reframe.metrics).
    reset_multiprocess_dir(settings.resolved_metrics_dir)
    started_ray = False
    if not ray.is_initialized():
        # Ray Serve's HAProxy ingress and its throughput mode: measured here at 100 polls/s,
        # the default Python proxy saturated at ~48 req/s (p50 12.9 s of queueing) while these
        # served all 100 req/s at p50 8 ms (bench/polling.py). Set either to 0 to opt out.
        # They must be in the environment before Ray starts: its processes inherit it.
        os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        # With direct ingress a replica lingers 30 s by default while HAProxy stops routing to
        # it, which made Ctrl-C take about 40 s; measured here, 2 s stops it in about 6 s.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
        cluster = os.environ.get("RAY_ADDRESS")
        if cluster:
            # On a cluster's head node (cluster.yaml) the API and the dispatcher join the
            # running cluster, so renders spread over its GPU workers.
            ray.init(address=cluster, log_to_driver=False)
        else:
            check_local_ray_ports()
            ray.init(
                address="local",
                num_cpus=available_cpus(),
                # The dashboard hosts Ray's job API: the dispatcher submits every render as a
                # Ray job there, so operators see them. Bound to loopback only.
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                log_to_driver=False,
            )
            started_ray = True
    serve.start(http_options={"host": host, "port": port})
    # Settings cross into the replica process explicitly, so the replica serves exactly the
    # configuration this process validated, whatever its own environment holds.
    values = settings.model_dump(mode="json", exclude_unset=False)
    serve.run(application(values), name=SERVE_APP_NAME, route_prefix="/")
    service = RunningService(
        url=settings.public_base_url, settings=settings, started_ray=started_ray
    )
    if background:
        try:
            service.stop_hooks.extend(start_background_services(settings))
        except BaseException:
            service.stop()
            raise
    return service


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _serve(args: argparse.Namespace) -> int:
    from reframe.cli._db import describe_database

    settings = settings_for(args.host, args.port)
    settings.log_setup().apply("serve")
    service = start_service(settings, args.host, args.port)
    print(f"Reframe API listening on {service.url}  (docs: {service.url}/docs)")
    print(f"Data: {settings.data_dir}  (database {describe_database(settings)})")
    print("Create an account and its API key in another terminal:")
    print("  reframe accounts create --email you@example.com")
    print(f'Then: curl -s {service.url}/me -H "Authorization: Bearer <your_api_key>"')
    print("Press Ctrl-C to stop.", flush=True)
    # `kill`, `docker stop` and systemd send SIGTERM: stop as cleanly as on Ctrl-C, so Ray,
    # Serve's HAProxy and the dispatcher do not outlive the command.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("Stopping...", file=sys.stderr)
    finally:
        service.stop()
    return 0
