"""cluster.yaml: secrets reach the nodes through an env file, and the dashboard is protected.

tests/pipeline/test_cluster_config.py checks the file against Ray's own launcher schema; these
tests check how it handles secrets and what it exposes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "cluster.env.example"
SECRETS = (
    "REFRAME_SECRET_KEY",
    "REFRAME_DATABASE_URL",
    "REFRAME_REDIS_URL",
    "REFRAME_S3_ACCESS_KEY_ID",
    "REFRAME_S3_SECRET_ACCESS_KEY",
)


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return data


def node_env_file(config: dict[str, Any]) -> tuple[str, str]:
    """(path on the nodes, path on the operator's machine) of the secrets file."""
    mounts = config["file_mounts"]
    found = [(remote, local) for remote, local in mounts.items() if remote.endswith(".env")]
    assert len(found) == 1, "one env file is mounted on the nodes"
    return found[0]


def start_commands(config: dict[str, Any]) -> list[str]:
    keys = ("head_start_ray_commands", "worker_start_ray_commands")
    return [c for key in keys for c in config[key] if "ray start" in c or "reframe serve" in c]


def test_no_secret_is_written_in_the_config() -> None:
    config = load()
    values = yaml.safe_dump({k: v for k, v in config.items()})  # comments are not config
    for name in SECRETS:
        assert f"{name}=" not in values, f"{name} is set in cluster.yaml"
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", values), "a URL with a password"


def test_the_env_file_comes_from_outside_the_checkout_and_is_not_synced_with_it() -> None:
    config = load()
    _, local = node_env_file(config)
    assert local.startswith("~/"), "keep the secrets out of the checkout `ray up` rsyncs"
    assert "deploy/.env" in config["rsync_exclude"]  # compose's secrets stay off the nodes
    assert ["chmod", "600", node_env_file(config)[0]] in [
        shlex.split(c) for c in config["setup_commands"]
    ]
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert set(SECRETS) <= example
    assert "REPLACE_ME" in ENV_EXAMPLE.read_text()


def test_every_process_ray_or_reframe_starts_exports_the_env_file_first() -> None:
    config = load()
    remote, _ = node_env_file(config)
    commands = start_commands(config)
    assert len(commands) == 3  # head ray start, reframe serve, worker ray start
    for command in commands:
        export = f"set -a && . {remote} && set +a &&"
        assert export in command, command
        start = min(i for i in (command.find("ray start"), command.find("reframe serve")) if i >= 0)
        assert command.index(export) < start


def test_the_export_really_reaches_a_child_process(tmp_path: Path) -> None:
    """Run the head's serve command up to `reframe serve`, with a child in its place."""
    config = load()
    remote, _ = node_env_file(config)
    env_file = tmp_path / "reframe.env"
    env_file.write_text(
        (ROOT / "deploy" / "cluster.env.example").read_text().replace("REPLACE_ME", "s3cr3t")
    )
    serve = next(c for c in start_commands(config) if "reframe serve" in c)
    prefix = serve.split("nohup reframe serve", 1)[0].replace(remote, str(env_file))
    prefix = prefix.replace("cd /home/ray/reframe", f"cd {tmp_path}")
    script = prefix + " env"
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    child = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert child["REFRAME_SECRET_KEY"].startswith("s3cr3t")
    assert child["REFRAME_DATABASE_URL"].startswith("postgresql+psycopg://reframe:s3cr3t@")
    assert child["RAY_AUTH_MODE"] == "token"


def test_the_dashboard_is_not_open_to_the_world() -> None:
    config = load()
    head_start = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    host = re.search(r"--dashboard-host=(\S+)", head_start)
    if host is None or host.group(1) in ("127.0.0.1", "localhost"):
        return  # loopback only: reached through `ray dashboard cluster.yaml`
    # Listening beyond loopback: token auth on every node, and no inbound rule of the
    # security group may open the dashboard or GCS to anyone outside the cluster.
    assert all("RAY_AUTH_MODE=token" in c for c in start_commands(config))
    group = config["provider"]["security_group"]
    for rule in group.get("IpPermissions", []):
        opened = range(rule.get("FromPort", 0), rule.get("ToPort", 65535) + 1)
        public = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        assert not (public and ({8265, 6379, 52365} & set(opened))), rule
