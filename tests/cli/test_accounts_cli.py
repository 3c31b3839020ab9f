"""`reframe accounts ...` and `reframe credits grant` against real SQLite and PostgreSQL; the
password `set-password` stores is checked through the studio's own login form."""

from __future__ import annotations

import getpass
import io
import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reframe.cli import main
from reframe.services import accounts, ledger, web_auth
from tests.fixtures.app import ApiHarness
from tests.fixtures.db import TestDatabase
from tests.web.test_auth import form_token


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


def test_create_says_why_a_returning_address_gets_no_gift(
    cli_env: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    from reframe.config import load_settings

    assert main(["accounts", "create", "--email", "back@example.com"]) == 0
    settings = load_settings()
    with cli_env.session() as session:
        old = accounts.get_by_email(session, "back@example.com")
        # What closing it (DELETE /me, reframe.services.deletion) leaves behind.
        old.closed_email_digest = accounts.email_digest(settings, old.email)
        old.email = f"closed-{old.id}@closed.invalid"
        session.commit()
    capsys.readouterr()
    assert main(["accounts", "create", "--email", "back@example.com"]) == 0
    out = capsys.readouterr().out
    assert "with 0 free xeconds" in out
    assert "no second signup gift" in out
    assert main(["accounts", "create", "--email", "new@example.com"]) == 0
    assert "signup gift" not in capsys.readouterr().out


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


def _log_in(client: TestClient, email: str, password: str) -> int:
    token = form_token(client, "/login")
    resp = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    return int(resp.status_code)


def test_set_password_lets_a_cli_account_log_in_to_the_studio(
    cli_env: TestDatabase,
    api: ApiHarness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["accounts", "create", "--email", "op@example.com"]) == 0
    client = api.client
    # Created by the CLI with an API key only: the studio's login refuses it.
    assert _log_in(client, "op@example.com", "first password 1") == 401

    monkeypatch.setattr(sys, "stdin", io.StringIO("first password 1\n"))
    assert main(["accounts", "set-password", "--email", "OP@example.com"]) == 0
    assert "Password set for op@example.com" in capsys.readouterr().out
    assert _log_in(client, "op@example.com", "first password 1") == 303
    me = client.get("/me")
    assert me.status_code == 200
    assert me.json()["account"]["email"] == "op@example.com"
    with cli_env.session() as session:
        stored = accounts.get_by_email(session, "op@example.com").password_hash
        assert stored is not None
        assert stored.startswith("$argon2id$")
        assert "first password 1" not in stored

    # Setting it again ends the sessions opened with the old one, and the old one stops working.
    monkeypatch.setattr(sys, "stdin", io.StringIO("second password 2\r\n"))
    assert main(["accounts", "set-password", "--email", "op@example.com"]) == 0
    assert client.get("/me").status_code == 401
    assert _log_in(client, "op@example.com", "first password 1") == 401
    assert _log_in(client, "op@example.com", "second password 2") == 303


def test_set_password_refuses_bad_input_and_changes_nothing(
    cli_env: TestDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accounts", "create", "--email", "dee@example.com"]) == 0
    capsys.readouterr()

    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["accounts", "set-password", "--email", "dee@example.com"]) == 2
    assert "at least" in capsys.readouterr().err

    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough password\n"))
    assert main(["accounts", "set-password", "--email", "nobody@example.com"]) == 2
    assert "no account with email nobody@example.com" in capsys.readouterr().err

    # On a terminal it prompts twice; two different answers change nothing.
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["long enough password", "a different password"])
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert main(["accounts", "set-password", "--email", "dee@example.com"]) == 2
    assert "differ" in capsys.readouterr().err
    with cli_env.session() as session:
        assert accounts.get_by_email(session, "dee@example.com").password_hash is None

    answers = iter(["long enough password", "long enough password"])
    assert main(["accounts", "set-password", "--email", "dee@example.com"]) == 0
    with cli_env.session() as session:
        account = accounts.get_by_email(session, "dee@example.com")
        assert web_auth.authenticate(session, "dee@example.com", "long enough password") == account
