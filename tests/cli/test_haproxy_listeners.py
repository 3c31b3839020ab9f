"""Ray Serve's HAProxy listens on nothing wider than the API's host (reframe.cli.haproxy).

The config is the one Ray 2.60 really renders (its own HAProxyApi writes it), and HAProxy is
the binary Ray really runs, started the way Ray starts it (`<binary> -db -f <config>`), so
what is checked is the set of sockets a real HAProxy opens.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from reframe.cli.haproxy import (
    METRICS_SECTION,
    STATS_SECTION,
    real_haproxy_binary,
    rewrite_config,
    write_launcher,
)
from reframe.cli.serve import ray_serve_environment
from reframe.config import Settings
from tests.fixtures.cluster import free_port as _free_port


def ray_config(folder: Path, *, host: str, port: int, stats: int, metrics: int) -> Path:
    """The HAProxy config Ray Serve writes for an API on host:port, in `folder`."""
    from ray.serve._private.haproxy import HAProxyApi, HAProxyConfig
    from ray.serve.config import HTTPOptions

    config = HAProxyConfig(
        http_options=HTTPOptions(host=host, port=port),
        stats_port=stats,
        metrics_port=metrics,
        socket_path=str(folder / "admin.sock"),
        server_state_base=str(folder),
        server_state_file=str(folder / "server-state"),
        metrics_socket_path=str(folder / "metrics.sock"),
    )
    path = folder / "haproxy.cfg"
    HAProxyApi(cfg=config, config_file_path=str(path))._generate_config_file_internal()
    return path


def _loopback_config(folder: Path, ports: dict[str, int]) -> Path:
    """Ray's config for an API on 127.0.0.1 with the stats and metrics ports of `ports`."""
    return ray_config(
        folder, host="127.0.0.1", port=ports["api"], stats=ports["stats"], metrics=ports["metrics"]
    )


def _listening(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.fixture
def ports() -> dict[str, int]:
    return {"api": _free_port(), "stats": _free_port(), "metrics": _free_port()}


def test_ray_puts_stats_and_metrics_on_every_interface(
    tmp_path: Path, ports: dict[str, int]
) -> None:
    # Why the launcher exists; if Ray ever binds these to the API host, it can go.
    text = ray_config(
        tmp_path,
        host="127.0.0.1",
        port=ports["api"],
        stats=ports["stats"],
        metrics=ports["metrics"],
    ).read_text()
    assert f"bind *:{ports['stats']}" in text
    assert f"bind :{ports['metrics']}" in text


def test_rewrite_drops_both_listeners_unless_configured(
    tmp_path: Path, ports: dict[str, int]
) -> None:
    raw = ray_config(
        tmp_path,
        host="127.0.0.1",
        port=ports["api"],
        stats=ports["stats"],
        metrics=ports["metrics"],
    ).read_text()
    text = rewrite_config(raw, host="127.0.0.1", stats_port=None, metrics_port=None)
    assert STATS_SECTION not in text
    assert METRICS_SECTION not in text
    binds = [line.split()[1] for line in text.splitlines() if line.split()[:1] == ["bind"]]
    assert binds == [f"127.0.0.1:{ports['api']}"]
    assert "frontend http_frontend" in text  # the API itself is untouched
    assert "backend default_backend" in text


def test_rewrite_binds_configured_listeners_to_the_api_host(
    tmp_path: Path, ports: dict[str, int]
) -> None:
    raw = ray_config(
        tmp_path, host="127.0.0.1", port=ports["api"], stats=8404, metrics=9101
    ).read_text()
    text = rewrite_config(raw, host="127.0.0.1", stats_port=18404, metrics_port=19101)
    binds = sorted(line.split()[1] for line in text.splitlines() if line.split()[:1] == ["bind"])
    assert binds == sorted([f"127.0.0.1:{ports['api']}", "127.0.0.1:18404", "127.0.0.1:19101"])
    # With the API on every interface, a configured listener follows it there.
    wide = rewrite_config(raw, host="0.0.0.0", stats_port=None, metrics_port=19101)  # noqa: S104
    assert "bind *:19101" in wide
    assert STATS_SECTION not in wide


def _start(launcher: Path, config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(launcher), "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def haproxy_runs() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> set[tuple[str, int]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"haproxy exited with {proc.returncode}: {err}")
        found = _listening(proc.pid)
        if any(p == port for _, p in found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"haproxy never listened on {port}")


@pytest.mark.parametrize("configured", [False, True])
def test_real_haproxy_started_through_the_launcher_stays_on_the_api_host(
    tmp_path: Path,
    ports: dict[str, int],
    haproxy_runs: list[subprocess.Popen[bytes]],
    configured: bool,
) -> None:
    config = ray_config(
        tmp_path,
        host="127.0.0.1",
        port=ports["api"],
        stats=ports["stats"],
        metrics=ports["metrics"],
    )
    launcher = write_launcher(
        tmp_path / "run",
        real_haproxy=real_haproxy_binary({}),
        host="127.0.0.1",
        stats_port=ports["stats"] if configured else None,
        metrics_port=ports["metrics"] if configured else None,
    )
    proc = _start(launcher, config)
    haproxy_runs.append(proc)
    listening = _wait_listening(proc, ports["api"])
    expected = {("127.0.0.1", ports["api"])}
    if configured:
        expected |= {("127.0.0.1", ports["stats"]), ("127.0.0.1", ports["metrics"])}
        _wait_listening(proc, ports["metrics"])
        listening = _listening(proc.pid)
    assert listening == expected
    # The launcher became HAProxy: Ray finds its process by the config path in the cmdline.
    process = psutil.Process(proc.pid)
    assert process.name() == "haproxy"
    assert str(config) in process.cmdline()


def test_a_launcher_left_in_the_environment_is_never_the_real_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An earlier start in this process exported its launcher; Ray's own lookup reads the
    # process environment, and wrapping that launcher applied its listener choice instead
    # of ours (seen: the configured metrics port never opened).
    stale = write_launcher(
        tmp_path / "old",
        real_haproxy="/bin/false",
        host="127.0.0.1",
        stats_port=None,
        metrics_port=None,
    )
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(stale))
    found = Path(real_haproxy_binary({}))
    assert found != stale
    assert b"reframe.cli.haproxy" not in found.read_bytes()[:4096]
    assert Path(real_haproxy_binary({"RAY_SERVE_HAPROXY_BINARY_PATH": str(stale)})) == found


def test_environment_points_ray_at_the_launcher(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", haproxy_metrics_port=9200)
    env = ray_serve_environment(settings, "127.0.0.1", {})
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    launcher = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert launcher.parent == (tmp_path / "var" / "run").resolve()
    assert os.access(launcher, os.X_OK)
    script = launcher.read_text()
    assert real_haproxy_binary({}) in script
    assert "--metrics-port 9200" in script
    assert "--stats-port" not in script
    assert "--host 127.0.0.1" in script

    # Started again in the same process, the launcher wraps the real binary, not itself.
    again = ray_serve_environment(settings, "127.0.0.1", {**os.environ, **env})
    assert real_haproxy_binary({}) in Path(again["RAY_SERVE_HAPROXY_BINARY_PATH"]).read_text()
    # An operator's own HAProxy binary is the one wrapped.
    custom = ray_serve_environment(
        settings, "127.0.0.1", {"RAY_SERVE_HAPROXY_BINARY_PATH": "/opt/haproxy/bin/haproxy"}
    )
    assert "/opt/haproxy/bin/haproxy" in Path(custom["RAY_SERVE_HAPROXY_BINARY_PATH"]).read_text()
    # HAProxy off: nothing to wrap.
    off = ray_serve_environment(settings, "127.0.0.1", {"RAY_SERVE_ENABLE_HA_PROXY": "0"})
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in off


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.own_ray
def test_a_served_api_on_loopback_has_no_haproxy_listener_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reframe serve --host 127.0.0.1` as users start it: HAProxy listens on 127.0.0.1 only.

    Ray's own daemons (GCS, raylet, agents) listen on every interface by Ray's design and are
    not HAProxy's; this checks the processes Ray Serve starts as HAProxy.
    """
    from reframe.cli.serve import settings_for, start_service

    for name in ("REFRAME_PUBLIC_BASE_URL", "RAY_ADDRESS", "RAY_SERVE_HAPROXY_BINARY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFRAME_DATA_DIR", str(tmp_path / "var"))
    port = _free_port()
    service = start_service(settings_for("127.0.0.1", port), "127.0.0.1", port, background=False)
    try:
        deadline = time.monotonic() + 120
        listening: set[tuple[str, int]] = set()
        # Ray reloads HAProxy as routes arrive (a new process takes over the sockets and the
        # old one exits), so sockets are read from whichever HAProxy is alive at the time.
        while time.monotonic() < deadline and ("127.0.0.1", port) not in listening:
            listening = set()
            for proc in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    if proc.name() == "haproxy":
                        listening |= _listening(proc.pid)
            time.sleep(0.2)
        assert ("127.0.0.1", port) in listening, f"no HAProxy listened on the API: {listening}"
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
        assert not {p for _, p in listening} & {8404, 9101}, listening
    finally:
        service.stop()


def test_rewrite_makes_haproxy_tell_the_replicas_who_the_client_was(
    tmp_path: Path, ports: dict[str, int]
) -> None:
    # Without it every client reaches the replicas from HAProxy's address: one bucket for all.
    raw = ray_config(
        tmp_path, host="127.0.0.1", port=ports["api"], stats=8404, metrics=9101
    ).read_text()
    lines = rewrite_config(raw, host="127.0.0.1", stats_port=None, metrics_port=None).splitlines()
    assert lines[lines.index("defaults") + 1] == "    option forwardfor"


def test_serve_trusts_this_machine_as_proxy_only_behind_haproxy_and_unless_configured() -> None:
    from reframe.cli.serve import local_proxy_trust
    from reframe.config import Settings

    plain = Settings()
    trusted = local_proxy_trust(plain, {"RAY_SERVE_ENABLE_HA_PROXY": "1"}, "192.0.2.7")
    assert trusted.trusted_proxies == "127.0.0.0/8, ::1, 192.0.2.7"
    assert len(trusted.trusted_proxy_networks.networks) == 3
    assert local_proxy_trust(plain, {"RAY_SERVE_ENABLE_HA_PROXY": "0"}, "192.0.2.7") is plain
    configured = Settings(trusted_proxies="10.0.0.0/8")
    assert local_proxy_trust(configured, {"RAY_SERVE_ENABLE_HA_PROXY": "1"}, "192.0.2.7") is (
        configured
    )
