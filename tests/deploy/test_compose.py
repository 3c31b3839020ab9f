"""deploy/compose.yaml, checked without a Docker engine.

`docker compose up` needs an engine, which the test machines do not run; `docker compose config`
is client-side and is used when the compose plugin is installed. The rules the file relies on are
checked here with PyYAML either way: healthchecks, dependency conditions, pinned images, secrets
only from the uncommitted env file, loopback-only ports, and settings the service really reads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, and $$ for a literal $.
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|AUTH|ACCESS_KEY|KEY_ID")


class MissingVariable(KeyError):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation rules for the forms this file uses."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if not unset:
            return value or ""
        if op and op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op and op.endswith("-") else ""

    return INTERPOLATION.sub(substitute, text)


def resolved(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: resolved(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = raw()["services"]
    return found


def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is a mapping, so values can be checked by name"
    return {str(key): str(value) for key, value in env.items()}


def one_shot(name: str) -> bool:
    """A job that runs to completion: never restarted, and awaited by exit status."""
    if services()[name].get("restart") != "no":
        return False
    waits = [
        dep[name]["condition"]
        for other in services().values()
        if isinstance(dep := other.get("depends_on"), dict) and name in dep
    ]
    return bool(waits) and set(waits) == {"service_completed_successfully"}


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        if one_shot(name):
            assert "healthcheck" not in service, f"{name} exits; its exit status is its health"
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} turns its healthcheck off"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in services().items():
        deps = service.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions, not a bare list"
        for dep, rule in deps.items():
            assert dep in services(), f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if one_shot(dep) else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dep}"
    head = services()["ray-head"]["depends_on"]
    assert {"postgres", "redis", "minio", "minio-init"} <= set(head)


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} floats"
        assert re.search(r"\d", tag), f"{name}: {image} is not a version"
        if not image.startswith("reframe:"):
            assert "build" not in service, name
            continue
        # Reframe's own images are built from deploy/Dockerfile, tagged with the package's
        # version and the flavour they were built with.
        build = service["build"]
        assert (ROOT / "deploy" / build["context"] / build["dockerfile"]).resolve() == (
            ROOT / "deploy" / "Dockerfile"
        )
        import tomllib

        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert tag == f"{version}-{build['args']['FLAVOR']}"


def test_no_secret_is_written_in_the_file() -> None:
    secrets = {name for name in example_env() if SECRET_NAME.search(name)}
    assert {"REFRAME_SECRET_KEY", "POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"} <= secrets
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and key != "RAY_AUTH_MODE":
                refs = set(INTERPOLATION.findall(value))
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{name}.{key} is inline"
                assert {ref[0] for ref in refs} <= secrets, f"{name}.{key}"
            if "://" in value and "@" in value:
                # A URL with credentials: the password part comes from the env file.
                userinfo = value.split("://", 1)[1].split("@", 1)[0]
                assert re.search(r":\$\{\w+:\?", userinfo), f"{name}.{key} embeds a password"
        command = json.dumps(service.get("command", ""))
        for secret in secrets:
            assert f"${{{secret}" not in command, f"{name}: {secret} on a command line"


def test_the_env_file_is_not_committed_and_the_example_covers_every_variable() -> None:
    proc = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT, check=False, capture_output=True
    )
    assert proc.returncode == 0, "deploy/.env must be ignored by git"
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required <= set(example_env()), required - set(example_env())
    for name in required:  # unmistakable placeholders, never a usable value
        assert example_env()[name].startswith(("replace-with-", "reframe-")), name
    with pytest.raises(MissingVariable, match="REFRAME_SECRET_KEY"):
        resolved(raw(), {k: v for k, v in example_env().items() if k != "REFRAME_SECRET_KEY"})


def test_only_loopback_ports_are_published() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every address"


def test_reframe_settings_are_real_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from reframe.config import Settings

    fields = {f"REFRAME_{name.upper()}" for name in Settings.model_fields}
    head = resolved(services()["ray-head"], example_env())
    env = environment(head)
    unknown = {key for key in env if key.startswith("REFRAME_")} - fields
    assert not unknown, f"not settings of reframe/config.py: {unknown}"
    for key in list(os.environ):
        if key.startswith("REFRAME_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # what the head's processes will read; refuses unsafe production
    assert settings.env == "production"
    assert settings.storage_backend == "s3"
    assert settings.resolved_database_url.startswith("postgresql+psycopg://reframe:")
    assert (settings.redis_url or "").startswith("redis://:")
    # Every Reframe node reads the same settings (render drivers and actors run anywhere).
    for name in ("ray-worker", "ray-worker-gpu"):
        assert environment(resolved(services()[name], example_env())) == env


def _head_ray_start() -> list[str]:
    script = services()["ray-head"]["command"][-1]
    return shlex.split(script.split("&&")[0])


def test_head_runs_reframe_serve_on_the_ray_it_started() -> None:
    from reframe.cli import build_parser

    head = services()["ray-head"]
    start = _head_ray_start()
    assert start[:3] == ["ray", "start", "--head"]
    port = next(word.split("=", 1)[1] for word in start if word.startswith("--port="))
    assert "--num-gpus=0" in start
    assert environment(head)["RAY_ADDRESS"] == f"ray-head:{port}"
    serve = shlex.split(head["command"][-1].split("&&")[1])
    assert serve[:3] == ["exec", "reframe", "serve"]
    args = build_parser().parse_args(serve[2:])
    assert f"127.0.0.1:{args.port}:{args.port}" in head["ports"]
    assert f":{args.port}/healthz" in head["healthcheck"]["test"][-1]
    for name in ("ray-worker", "ray-worker-gpu"):
        assert services()[name]["command"][:3] == ["ray", "start", f"--address=ray-head:{port}"]


def test_every_ray_node_uses_token_auth() -> None:
    for name in ("ray-head", "ray-worker", "ray-worker-gpu"):
        env = environment(services()[name])
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name


def test_gpu_worker_is_opt_in_and_reserves_gpus() -> None:
    gpu = services()["ray-worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["FLAVOR"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert all("profiles" not in s for n, s in services().items() if n != "ray-worker-gpu")


def test_presigned_urls_name_a_host_that_works_inside_and_outside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = environment(resolved(services()["ray-head"], example_env()))
    endpoint = env["REFRAME_S3_ENDPOINT_URL"]
    host, port = endpoint.removeprefix("http://").split(":")
    assert host.endswith(".localhost")  # the host's resolvers send *.localhost to 127.0.0.1
    minio = services()["minio"]
    assert host in minio["networks"]["default"]["aliases"]  # the containers' DNS to MinIO
    assert f"127.0.0.1:{port}:9000" in minio["ports"]


FAKE_MC = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["MC_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:3] == ["admin", "policy", "create"]:
    json.load(open(args[5]))  # mc refuses a policy that is not JSON
if args[:3] == ["admin", "user", "info"]:
    print(os.environ.get("MC_ATTACHED", ""))
"""


@pytest.mark.parametrize("attached", [False, True])
def test_bucket_job_creates_a_bucket_scoped_user(tmp_path: Path, attached: bool) -> None:
    """Run minio-init's script under /bin/sh with a recording `mc`: it must be valid shell,
    write a valid policy for the bucket alone, and attach it only once (reruns of `up`)."""
    job = resolved(services()["minio-init"], example_env())
    assert job["entrypoint"] == ["/bin/sh", "-ec"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mc = bin_dir / "mc"
    mc.write_text(FAKE_MC.format(python=sys.executable))
    mc.chmod(0o755)
    log = tmp_path / "mc.log"
    env = {
        **environment(job),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "MC_LOG": str(log),
        "MC_ATTACHED": "PolicyName: reframe-app" if attached else "",
    }
    script = job["command"][0].replace("/tmp/reframe-app.json", str(tmp_path / "policy.json"))
    subprocess.run(["/bin/sh", "-ec", script], env=env, check=True, timeout=30, cwd=tmp_path)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    bucket = env["BUCKET"]
    assert ["mb", "--ignore-existing", f"local/{bucket}"] in calls
    assert ["admin", "user", "add", "local", env["APP_KEY_ID"], env["APP_SECRET"]] in calls
    attach = ["admin", "policy", "attach", "local", "reframe-app", "--user", env["APP_KEY_ID"]]
    assert (attach in calls) is not attached
    policy = json.loads((tmp_path / "policy.json").read_text())
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions
    assert not any(a.startswith("s3:*") or ("Bucket" in a and "Create" in a) for a in actions)


def _compose_cli() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine: `docker compose config` cannot run")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False, timeout=30
    )
    if probe.returncode != 0:
        said = (probe.stderr or probe.stdout).strip().splitlines()
        pytest.skip(
            "the docker CLI has no compose plugin here (`docker compose version`: "
            f"{said[0][:120] if said else probe.returncode}); the structural tests above "
            "still check the file"
        )
    return [docker, "compose"]


def test_docker_compose_accepts_the_file() -> None:
    """`docker compose config` is client-side: it parses, validates and interpolates."""
    cli = _compose_cli()
    proc = subprocess.run(
        [*cli, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "--profile", "gpu",
         "config", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    assert set(config["services"]) == set(services())
    expected = resolved(services()["ray-head"], example_env())
    assert config["services"]["ray-head"]["environment"] == environment(expected)
