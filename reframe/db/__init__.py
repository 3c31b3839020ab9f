"""Persistence: SQLAlchemy models, engine/session helpers and Alembic migrations."""

from reframe.db.migrate import migrate
from reframe.db.session import lock_account, make_engine, make_sessionmaker, session_scope

__all__ = ["lock_account", "make_engine", "make_sessionmaker", "migrate", "session_scope"]
