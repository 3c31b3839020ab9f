"""Engines, sessions and the account write lock, for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.models import Account, LedgerEntry
from reframe.errors import NotFound


class LedgerIsAppendOnly(RuntimeError):
    """Raised when code tries to edit or delete a ledger row; corrections are new entries."""


# Execution option for sessions that serve read requests (see make_engine's SQLite "begin").
# Such a session may still write something small (a key's last use); the write then needs the
# lock it did not take up front and can lose a race, which its caller tolerates.
READ_MOSTLY = "reframe_read_mostly"


def is_sqlite(url_or_engine: str | Engine) -> bool:
    url = url_or_engine if isinstance(url_or_engine, str) else str(url_or_engine.url)
    return url.startswith("sqlite")


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """An Engine configured for this service's locking rules on either dialect."""
    if not is_sqlite(database_url):
        return create_engine(database_url, pool_pre_ping=True, **kwargs)

    # The API answers from a thread pool: one connection may be used by several threads in
    # turn. The long timeout makes concurrent writers wait for the lock instead of failing.
    connect_args = {"check_same_thread": False, "timeout": 30.0}
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(database_url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (pysqlite's own BEGIN handling would defeat
        # BEGIN IMMEDIATE), and turn on what SQLite leaves off by default.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        if ":memory:" not in database_url:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_MOSTLY):
            # Polling reads (GET /jobs/{id} every few seconds) must not queue behind writers:
            # in WAL mode a deferred transaction reads a snapshot without any lock.
            conn.exec_driver_sql("BEGIN")
            return
        # Every other transaction takes the write lock up front. A deferred transaction that reads
        # and then writes fails at once with "database is locked" when another writer got in
        # between (SQLite cannot upgrade a stale snapshot and does not wait in that case).
        # Taking the lock first makes writers queue on the busy timeout instead. The cost is
        # that transactions run one at a time, so services keep them short and never hold one
        # across slow I/O (probing, storage transfers). PostgreSQL is the choice under load.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _refuse_ledger_changes(session: Session, _ctx: object, _instances: object) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, LedgerEntry) and (
            obj in session.deleted or session.is_modified(obj, include_collections=False)
        ):
            raise LedgerIsAppendOnly(
                "ledger entries are never changed or deleted; append a correcting entry instead"
            )


def make_sessionmaker(engine: Engine, *, read_mostly: bool = False) -> sessionmaker[Session]:
    bind = engine.execution_options(**{READ_MOSTLY: True}) if read_mostly else engine
    factory = sessionmaker(bind=bind, expire_on_commit=False)
    event.listen(factory, "before_flush", _refuse_ledger_changes)
    return factory


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def lock_account(session: Session, account_id: str) -> Account:
    """Start the money transaction for `account_id` and hold its lock until commit/rollback.

    PostgreSQL: SELECT ... FOR UPDATE on the account row serialises spenders of one account.
    SQLite has no row locks; every transaction there starts with BEGIN IMMEDIATE (see
    make_engine), which takes the database write lock, so two spenders cannot both read the
    old balance. Either way the caller must not be inside a
    transaction already: a lock taken after reading would protect nothing.
    """
    if session.in_transaction():
        raise RuntimeError(
            "lock_account() must start the transaction; commit or roll back the session first"
        )
    bind = session.get_bind()
    if is_sqlite(bind.engine):
        account = session.get(Account, account_id, populate_existing=True)
    else:
        account = session.execute(
            select(Account)
            .where(Account.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return account
