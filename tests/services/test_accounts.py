"""API keys and accounts against a real database."""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from reframe.config import Settings
from reframe.db.models import Account, ApiKey
from reframe.db.session import make_sessionmaker
from reframe.errors import AccountDisabled, Conflict, InvalidInput, NotFound, Unauthorized
from reframe.jobs.lifecycle import JobLifecycle
from reframe.services import accounts, deletion, ledger
from reframe.storage import build_storage
from tests.fixtures.app import make_settings
from tests.fixtures.db import TestDatabase


def test_key_format_and_storage(db: TestDatabase) -> None:
    with db.session() as s:
        account, issued = accounts.create_account(s, Settings(), "k@example.com")
        s.commit()
        key = issued.plaintext
        assert key.startswith("rf_live_")
        raw = base64.urlsafe_b64decode(key.removeprefix("rf_live_") + "=")
        assert len(raw) >= 32
        row = s.scalars(select(ApiKey)).one()
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key.startswith(row.prefix)
        assert len(row.prefix) == 16
        # Nothing stored could be used as the key.
        assert key not in {row.key_hash, row.prefix}
        assert accounts.authenticate(s, key).id == account.id


def test_signup_gift_follows_settings(db: TestDatabase) -> None:
    with db.session() as s:
        a, _ = accounts.create_account(s, Settings(free_xeconds_on_signup=7), "a@example.com")
        b, _ = accounts.create_account(s, Settings(), "b@example.com", free_xeconds=0)
        s.commit()
        assert ledger.balance(s, a.id).free == 7
        assert ledger.balance(s, b.id).total == 0


def test_an_address_of_a_closed_account_gets_no_second_gift(
    db: TestDatabase, tmp_path: Path
) -> None:
    """The rule on both databases, through the real closure (DELETE /me's service), with a
    signup racing it: whenever the signup gets the address, it gets no gift.
    tests/web/test_auth.py runs the attack through the studio and the API."""
    settings = make_settings(tmp_path, db).model_copy(update={"free_xeconds_on_signup": 7})
    storage = build_storage(settings)
    life = JobLifecycle(make_sessionmaker(db.engine))
    with db.session() as s:
        first, _ = accounts.create_account(s, settings, "back@example.com")
        s.commit()
        first_id = first.id

    created: list[str] = []
    errors: list[BaseException] = []
    closing = threading.Event()

    def sign_up_until_free() -> None:
        closing.wait()
        try:
            for _ in range(2000):
                with db.session() as s:
                    try:
                        again, _ = accounts.create_account(s, settings, "Back@Example.com")
                        s.commit()
                    except Conflict:
                        continue  # the closure has not scrubbed the address yet
                    created.append(again.id)
                    return
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    racer = threading.Thread(target=sign_up_until_free)
    racer.start()
    with db.session() as s:
        owner = s.get(Account, first_id)
        assert owner is not None
        closing.set()
        deletion.close_account(s, storage, settings, life, owner, "back@example.com")
    racer.join(timeout=120)
    assert not errors
    assert len(created) == 1
    with db.session() as s:
        assert ledger.balance(s, created[0]).total == 0
        granted, _ = accounts.create_account(s, settings, "back@example.org")
        s.commit()
        assert ledger.balance(s, granted.id).free == 7
        # An operator's explicit amount is theirs to give.
        again = s.get(Account, created[0])
        assert again is not None
        again.email = "moved@closed.invalid"
        s.commit()
        operator, _ = accounts.create_account(s, settings, "back@example.com", free_xeconds=5)
        s.commit()
        assert ledger.balance(s, operator.id).free == 5


def test_email_digest_is_keyed_and_reveals_no_address() -> None:
    one = accounts.email_digest(Settings(secret_key="a" * 40), "who@example.com")
    other = accounts.email_digest(Settings(secret_key="b" * 40), "who@example.com")
    assert one != other
    assert one != hashlib.sha256(b"who@example.com").hexdigest()
    assert "who" not in one
    assert len(one) == 64


def test_rotation_revokes_in_the_same_transaction(db: TestDatabase) -> None:
    with db.session() as s:
        account, first = accounts.create_account(s, Settings(), "r@example.com")
        s.commit()
        second = accounts.rotate_key(s, account.id)
        s.rollback()  # neither half may survive alone
        assert accounts.authenticate(s, first.plaintext).id == account.id
        with pytest.raises(Unauthorized):
            accounts.authenticate(s, second.plaintext)
        account_id = account.id  # read before the rollback expires it
        s.rollback()  # a rotation starts its own transaction, with the account lock
        third = accounts.rotate_key(s, account_id)
        s.commit()
        with pytest.raises(Unauthorized):
            accounts.authenticate(s, first.plaintext)
        assert accounts.authenticate(s, third.plaintext).id == account_id


def test_last_used_is_recorded_at_minute_resolution(db: TestDatabase) -> None:
    with db.session() as s:
        _, issued = accounts.create_account(s, Settings(), "u@example.com")
        s.commit()
        accounts.authenticate(s, issued.plaintext)
        s.commit()
        first = issued.record.last_used_at
        assert first is not None
        accounts.authenticate(s, issued.plaintext, now=first + timedelta(seconds=5))
        assert issued.record.last_used_at == first
        later = first + timedelta(minutes=2)
        accounts.authenticate(s, issued.plaintext, now=later)
        assert issued.record.last_used_at == later


def test_disabled_account_cannot_authenticate(db: TestDatabase) -> None:
    with db.session() as s:
        account, issued = accounts.create_account(s, Settings(), "d@example.com")
        account.disabled = True
        s.commit()
        # 403, not 401: the key is right, the account is refused (a new key would not help).
        with pytest.raises(AccountDisabled, match="disabled by the operator") as refused:
            accounts.authenticate(s, issued.plaintext)
        assert refused.value.status_code == 403


def test_emails_are_normalised_and_unique(db: TestDatabase) -> None:
    with db.session() as s:
        accounts.create_account(s, Settings(), "  Mixed@Example.COM ")
        s.commit()
        assert accounts.get_by_email(s, "mixed@example.com").email == "mixed@example.com"
        with pytest.raises(Conflict):
            accounts.create_account(s, Settings(), "MIXED@example.com")
        s.rollback()
        with pytest.raises(InvalidInput):
            accounts.create_account(s, Settings(), "not-an-email")
        with pytest.raises(NotFound):
            accounts.get_by_email(s, "who@example.com")
        assert [a.email for a in s.scalars(select(Account))] == ["mixed@example.com"]
