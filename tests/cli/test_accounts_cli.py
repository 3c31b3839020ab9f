"""`reframe accounts ...` and `reframe credits grant` against real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reframe.cli import main
from reframe.services import accounts, ledger
from tests.fixtures.db import TestDatabase


@pytest.fixture
def cli_env(db: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestDatabase:
    monkeypatch.setenv("REFRAME_DATABASE_URL", db.url)
    monkeypatch.setenv("REFRAME_DATA_DIR", str(tmp_path / "var"))
    return db


def test_create_prints_a_working_key_once(
    cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accounts", "create", "--email", "Ann@Example.com", "--free-xeconds", "12"]) == 0
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    assert key.startswith("rf_live_")
    assert len(key) >= 8 + 43
    with cli_env.session() as session:
        account = accounts.authenticate(session, key)
        assert account.email == "ann@example.com"
        assert ledger.balance(session, account.id).free == 12
        stored = accounts.active_key(session, account.id)
        assert stored is not None
        assert key not in (stored.key_hash, stored.prefix)


def test_duplicate_email_is_an_error(
    cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accounts", "create", "--email", "bo@example.com"]) == 0
    assert main(["accounts", "create", "--email", "BO@example.com"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_grant_and_list(cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["accounts", "create", "--email", "cy@example.com"]) == 0
    assert (
        main(["credits", "grant", "--email", "cy@example.com", "--xeconds", "50", "--kind", "paid"])
        == 0
    )
    assert (
        main(["credits", "grant", "--email", "cy@example.com", "--xeconds", "5", "--kind", "free"])
        == 0
    )
    capsys.readouterr()
    assert main(["accounts", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["email"], r["free_xeconds"], r["paid_xeconds"]) for r in rows] == [
        ("cy@example.com", 35, 50)
    ]
    assert rows[0]["key_prefix"].startswith("rf_live_")
    assert main(["accounts", "list"]) == 0
    assert "cy@example.com" in capsys.readouterr().out


def test_grant_errors(cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["credits", "grant", "--email", "no@example.com", "--xeconds", "5", "--kind", "paid"])
        == 2
    )
    assert "no account with email" in capsys.readouterr().err
    assert main(["accounts", "create", "--email", "dee@example.com"]) == 0
    assert (
        main(["credits", "grant", "--email", "dee@example.com", "--xeconds", "0", "--kind", "paid"])
        == 2
    )
    assert "positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["credits", "grant", "--email", "dee@example.com", "--xeconds", "5", "--kind", "gold"])


def test_list_empty(cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["accounts", "list"]) == 0
    assert "No accounts yet" in capsys.readouterr().out


def test_help_lists_the_operator_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "accounts", "credits"):
        assert command in out
