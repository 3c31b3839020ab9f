"""Operator commands and the service find one data home wherever they run from.

The bug this guards: `reframe accounts create` run from another directory than `scripts/run`
created a second, empty SQLite database under that directory's `./var`, and the printed key
was refused by the running service. The home is REFRAME_HOME, else the checkout's `var/`, else
the user's data directory; never the working directory. The CLI runs here as a real process,
from other directories, on a copy of the package laid out as a checkout or as an installed
package, so the rule is tested where it matters: in `reframe.config` as a process starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reframe.config import Settings, checkout_root, default_home

PACKAGE = Path(__file__).resolve().parents[2] / "reframe"
CLI = "import sys; from reframe.cli import main; sys.exit(main(sys.argv[1:]))"


def lay_out(root: Path, *, checkout: bool) -> Path:
    """A copy of the package under `root`: with a checkout's files beside it, or bare (as in
    site-packages)."""
    root.mkdir(parents=True)
    shutil.copytree(PACKAGE, root / "reframe", ignore=shutil.ignore_patterns("__pycache__"))
    if checkout:
        (root / "pyproject.toml").write_text("[project]\nname = 'reframe'\n")
        (root / "scripts").mkdir()
        (root / "scripts" / "run").write_text("#!/bin/sh\n")
    return root


def cli_env(package_root: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REFRAME_") and k not in ("PYTHONPATH", "XDG_DATA_HOME")
    }
    env["PYTHONPATH"] = str(package_root)
    env.update(extra)
    return env


def reframe(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_from_a_checkout_every_directory_uses_the_checkouts_var(tmp_path: Path) -> None:
    checkout = lay_out(tmp_path / "checkout", checkout=True)
    env = cli_env(checkout)
    here, elsewhere = tmp_path / "where-run-started", tmp_path / "somewhere-else"
    here.mkdir()
    elsewhere.mkdir()

    created = reframe(here, env, "accounts", "create", "--email", "ann@example.com")
    database = checkout / "var" / "reframe.db"
    assert f"reframe: database sqlite:///{database}" in created.stderr
    # The first command made the database, and says so.
    assert "a new, empty one was created" in created.stderr

    listed = reframe(elsewhere, env, "accounts", "list", "--json")
    assert [row["email"] for row in json.loads(listed.stdout)] == ["ann@example.com"]
    assert f"reframe: database sqlite:///{database}" in listed.stderr
    assert "new, empty" not in listed.stderr
    assert not (here / "var").exists()
    assert not (elsewhere / "var").exists()


@pytest.mark.slow  # three CLI processes in a laid-out site-packages (~6 s)
def test_installed_the_home_is_the_user_data_dir_and_reframe_home_overrides(
    tmp_path: Path,
) -> None:
    site = lay_out(tmp_path / "site-packages", checkout=False)
    xdg = tmp_path / "xdg-data"
    somewhere = tmp_path / "cwd"
    somewhere.mkdir()

    made = reframe(
        somewhere, cli_env(site, XDG_DATA_HOME=str(xdg)), "accounts", "create", "--email", "b@x.io"
    )
    assert f"sqlite:///{xdg / 'reframe' / 'reframe.db'}" in made.stderr
    assert not (somewhere / "var").exists()

    home = tmp_path / "explicit-home"
    env = cli_env(site, XDG_DATA_HOME=str(xdg), REFRAME_HOME=str(home))
    reframe(somewhere, env, "accounts", "create", "--email", "c@x.io")
    listed = reframe(tmp_path, env, "accounts", "list", "--json")
    assert [row["email"] for row in json.loads(listed.stdout)] == ["c@x.io"]
    assert f"sqlite:///{home / 'reframe.db'}" in listed.stderr


def test_the_database_url_is_printed_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reframe.cli._db import describe_database

    settings = Settings(
        data_dir=tmp_path, database_url="postgresql+psycopg://reframe:s3cret-pw@db.internal/prod"
    )
    shown = describe_database(settings)
    assert "s3cret-pw" not in shown
    assert shown == "postgresql+psycopg://reframe:***@db.internal/prod"


def test_the_home_rule_in_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REFRAME_HOME", "REFRAME_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    root = checkout_root()
    assert root == PACKAGE.parent  # the tests run from a checkout
    assert default_home() == root / "var"
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == root / "var"
    # A relative REFRAME_HOME is made absolute once, so child processes agree with this one.
    monkeypatch.setenv("REFRAME_HOME", "relative/home")
    assert Settings().data_dir == tmp_path / "relative" / "home"
    # The older name still works; REFRAME_HOME wins when both are set.
    monkeypatch.setenv("REFRAME_DATA_DIR", str(tmp_path / "old"))
    assert Settings().data_dir == tmp_path / "relative" / "home"
    monkeypatch.delenv("REFRAME_HOME")
    assert Settings().data_dir == tmp_path / "old"
