"""Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from reframe.config import Settings
from reframe.db import migrate
from reframe.db.migrate import alembic_config
from reframe.db.models import Base, CreditPool, LedgerEntry, LedgerReason
from reframe.db.session import LedgerIsAppendOnly
from reframe.services import accounts, ledger
from tests.fixtures.db import TestDatabase

TABLES = {
    "accounts",
    "api_keys",
    "ledger_entries",
    "projects",
    "files",
    "jobs",
    "job_events",
    "shares",
}


def test_migrated_schema_matches_the_models(db: TestDatabase) -> None:
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []
    assert set(inspect(db.engine).get_table_names()) >= TABLES
    cols = {c["name"]: c for c in inspect(db.engine).get_columns("accounts")}
    assert cols["password_hash"]["nullable"] is True


def test_migrate_is_idempotent_and_reversible(db: TestDatabase) -> None:
    migrate(db.url)  # already at head: no-op
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert not TABLES & set(inspect(db.engine).get_table_names())
    migrate(db.url)
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def _account_with_entry(db: TestDatabase) -> int:
    with db.session() as s:
        account, _ = accounts.create_account(s, Settings(), "led@example.com", free_xeconds=9)
        s.commit()
        entry = s.query(LedgerEntry).filter_by(account_id=account.id).one()
        return entry.id


def test_ledger_rows_cannot_be_changed_in_the_orm(db: TestDatabase) -> None:
    entry_id = _account_with_entry(db)
    with db.session() as s:
        entry = s.get(LedgerEntry, entry_id)
        assert entry is not None
        entry.delta = 1000
        with pytest.raises(LedgerIsAppendOnly):
            s.flush()
    with db.session() as s:
        entry = s.get(LedgerEntry, entry_id)
        s.delete(entry)
        with pytest.raises(LedgerIsAppendOnly):
            s.flush()


def test_ledger_rows_cannot_be_changed_in_sql_either(db: TestDatabase) -> None:
    entry_id = _account_with_entry(db)
    for statement in (
        "UPDATE ledger_entries SET delta = 1000 WHERE id = :id",
        "DELETE FROM ledger_entries WHERE id = :id",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement), {"id": entry_id})
    with db.session() as s:
        entry = s.get(LedgerEntry, entry_id)
        assert entry is not None
        assert entry.delta == 9


def test_a_job_is_charged_and_refunded_at_most_once(db: TestDatabase) -> None:
    from sqlalchemy.exc import IntegrityError

    with db.session() as s:
        account, _ = accounts.create_account(s, Settings(), "once@example.com")
        s.commit()
        # A job row is needed for the foreign key; the constraint is what is under test.
        s.execute(
            text(
                "INSERT INTO projects (id, account_id, name, created_at) "
                "VALUES ('p1', :a, 'p', CURRENT_TIMESTAMP)"
            ),
            {"a": account.id},
        )
        s.execute(
            text(
                "INSERT INTO files (id, project_id, account_id, role, status, storage_key, "
                "filename, content_type, created_at) VALUES ('f1', 'p1', :a, 'input', 'ready', "
                "'k', 'f', 'video/mp4', CURRENT_TIMESTAMP)"
            ),
            {"a": account.id},
        )
        s.execute(
            text(
                "INSERT INTO jobs (id, account_id, project_id, input_file_id, status, target_fps,"
                " source_fps, duration_sec, band, multiplier, charged_xeconds, payment_kind, "
                "watermarked, refunded_xeconds, progress, attempts, created_at, updated_at) "
                "VALUES ('j1', :a, 'p1', 'f1', 'queued', 60, 24, 2, 'smooth', 1, 2, 'free', "
                ":t, 0, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"a": account.id, "t": True},
        )
        s.commit()
        for reason in (LedgerReason.JOB_CHARGE, LedgerReason.JOB_REFUND):
            ledger.append(
                s,
                account.id,
                pool=CreditPool.FREE,
                delta=-2 if reason == "job_charge" else 2,
                reason=reason,
                job_id="j1",
            )
        s.commit()
        with pytest.raises(IntegrityError):
            ledger.append(
                s,
                account.id,
                pool=CreditPool.FREE,
                delta=2,
                reason=LedgerReason.JOB_REFUND,
                job_id="j1",
            )
        s.rollback()
        assert ledger.balance(s, account.id).free == 30
