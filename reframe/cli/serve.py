"""`reframe serve [--host H] [--port P]`: migrate, start a local Ray, serve the API, block.

`start_service` does the work and returns a handle, so tests and other launchers can start the
same thing without blocking.
"""

from __future__ import annotations

# Handlers import what they use when they run, so `reframe --help` and every other command
# stay instant (see reframe/cli/__init__.py).
import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
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
    saved_env: dict[str, str] | None = None  # the environment before start, put back at stop

    def stop(self) -> None:
        from ray import serve

        # The dispatcher's replica releases its leases as Serve shuts it down, so a restarted
        # service adopts the renders still running.
        with contextlib.suppress(Exception):
            serve.delete(SERVE_APP_NAME)
        serve.shutdown()  # type: ignore[no-untyped-call]
        for hook in reversed(self.stop_hooks):
            hook()
        if self.started_ray:
            import ray

            ray.shutdown()
        if self.saved_env is not None:
            # Ray's processes are gone or hold their own copy; only this process's changes.
            for key in set(os.environ) - set(self.saved_env):
                del os.environ[key]
            os.environ.update(self.saved_env)


def settings_for(host: str, port: int) -> Settings:
    """Settings from the environment; the public URL follows --host/--port unless set."""
    from reframe.config import read_settings

    if os.environ.get("REFRAME_PUBLIC_BASE_URL"):
        return read_settings()
    # 0.0.0.0 is where we listen, not an address a client can use; the URL goes into signed
    # upload links, so it must be one that reaches us.
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    return read_settings(public_base_url=f"http://{shown}:{port}")


def ray_serve_environment(
    settings: Settings, host: str, environ: Mapping[str, str]
) -> dict[str, str]:
    """The RAY_SERVE_* variables for the local Ray that serves the API; `environ` wins.

    With HAProxy on, its binary is a launcher (reframe.cli.haproxy, written under the data
    folder) that keeps its stats and metrics listeners off, or on `host` when configured.
    """
    from reframe.cli.haproxy import real_haproxy_binary, write_launcher

    env = {
        # Ray Serve's HAProxy ingress and its throughput mode: measured here at 100 polls/s,
        # the default Python proxy saturated at ~48 req/s (p50 12.9 s of queueing) while these
        # served all 100 req/s at p50 8 ms (bench/polling.py). Set either to 0 to opt out.
        "RAY_SERVE_ENABLE_HA_PROXY": environ.get("RAY_SERVE_ENABLE_HA_PROXY", "1"),
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1"),
        # With direct ingress a replica lingers 30 s by default while HAProxy stops routing to
        # it, which made Ctrl-C take about 40 s; measured here, 2 s stops it in about 6 s.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": environ.get(
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2"
        ),
    }
    if env["RAY_SERVE_ENABLE_HA_PROXY"] == "1":
        launcher = write_launcher(
            settings.data_dir.resolve() / "run",
            real_haproxy=real_haproxy_binary(environ),
            host=host,
            stats_port=settings.haproxy_stats_port,
            metrics_port=settings.haproxy_metrics_port,
        )
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(launcher)
    return env


def local_proxy_trust(settings: Settings, environ: Mapping[str, str], node_ip: str) -> Settings:
    """`settings` for the replicas: behind Ray's HAProxy (the default), this machine's own
    addresses are trusted proxies unless REFRAME_TRUSTED_PROXIES says otherwise.

    Every request reaches a replica from HAProxy on this machine, which appends the client's
    address to X-Forwarded-For (reframe.cli.haproxy); without trusting it, all clients would
    share the rate-limit bucket of HAProxy's address. Only processes on this machine connect
    from these addresses, and they could reach the database as well.
    """
    if settings.trusted_proxies or environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        return settings
    local = ["127.0.0.0/8", "::1", node_ip]
    return settings.model_copy(update={"trusted_proxies": ", ".join(local)})


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


def check_storage_reaches_every_node(settings: Settings) -> None:
    """Refuse local storage on a cluster of several machines: render actors on other nodes
    cannot read this machine's disk, so every job would fail there."""
    from reframe.errors import Conflict
    from reframe.pipeline.cluster import read_cluster_resources

    if settings.storage_backend != "local":
        return
    resources = read_cluster_resources(settings.autoscaler_config)
    if resources.nodes > 1 or resources.autoscaling:
        raise Conflict(
            f"this Ray cluster has {resources.nodes} node(s)"
            + (" and autoscales" if resources.autoscaling else "")
            + ", but REFRAME_STORAGE_BACKEND is local: render actors on other machines cannot "
            "read this one's disk. Use object storage every node reaches: set "
            "REFRAME_STORAGE_BACKEND=s3 with REFRAME_S3_BUCKET, REFRAME_S3_ENDPOINT_URL (for "
            "R2 or MinIO) and REFRAME_S3_ACCESS_KEY_ID / REFRAME_S3_SECRET_ACCESS_KEY."
        )


def start_service(
    settings: Settings, host: str, port: int, *, background: bool = True
) -> RunningService:
    """Serve the API and the dispatcher on Ray (starting a local Ray unless one is running).

    `background=False` serves the API alone, without the dispatcher: for a Ray that was started
    elsewhere (a test session's) and renders nothing.
    """
    from reframe.config import refuse_weak_secret_on

    # Before anything starts: with --host 0.0.0.0 the service is reachable from the network
    # whatever REFRAME_PUBLIC_BASE_URL says.
    refuse_weak_secret_on(settings, host)

    import ray
    from ray import serve

    from reframe.config import SECRETS_DIR_ENV, public_values, write_secrets
    from reframe.db import migrate
    from reframe.metrics import reset_multiprocess_dir
    from reframe.sched import available_cpus
    from reframe.serving import application

    migrate(settings.resolved_database_url)
    settings.resolved_storage_dir.mkdir(parents=True, exist_ok=True)
    # The secrets this process holds reach the replicas and render drivers as files next to
    # the data, never as Ray arguments (reframe.config.SECRET_FIELDS).
    secrets_dir = write_secrets(settings, (settings.data_dir / "run" / "secrets").resolve())
    # What this start puts into the process environment is taken out again at stop: a
    # second start in the same process (tests, an embedding app) must not inherit a first
    # one's launcher or secrets folder, both deleted by then.
    saved_env = dict(os.environ)
    os.environ[SECRETS_DIR_ENV] = str(secrets_dir)
    # Before the replicas and the dispatcher start writing there (reframe.metrics).
    reset_multiprocess_dir(settings.resolved_metrics_dir)
    started_ray = False
    if not ray.is_initialized():
        # Must be in the environment before Ray starts: its processes inherit it.
        os.environ.update(ray_serve_environment(settings, host, os.environ))
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
    service = RunningService(
        url=settings.public_base_url, settings=settings, started_ray=started_ray
    )
    service.stop_hooks.append(lambda: shutil.rmtree(secrets_dir, ignore_errors=True))
    service.saved_env = saved_env
    try:
        if background:
            check_storage_reaches_every_node(settings)
        node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        settings = local_proxy_trust(settings, os.environ, node_ip)
        serve.start(http_options={"host": host, "port": port})
        # Settings cross into the replicas explicitly, so they serve exactly the configuration
        # this process validated, whatever their own environment holds; secrets excepted.
        serve.run(
            application(
                public_values(settings), dispatcher=background, secrets_dir=str(secrets_dir)
            ),
            name=SERVE_APP_NAME,
            route_prefix="/",
        )
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
