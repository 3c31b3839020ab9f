"""Backends for the job-lifecycle stores: each test runs against the in-process and Redis ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from reframe.jobs.events import EventBus, MemoryEventBus, RedisEventBus
from reframe.jobs.progress import MemoryProgressStore, ProgressStore, RedisProgressStore
from reframe.jobs.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, redis.Redis | None, str]]:
    if request.param == "memory":
        yield "memory", None, ""
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    client: redis.Redis = redis.Redis.from_url(url, decode_responses=True)
    yield "redis", client, prefix
    client.close()


@pytest.fixture
def progress_store(backend: tuple[str, redis.Redis | None, str]) -> ProgressStore:
    _kind, client, prefix = backend
    if client is None:
        return MemoryProgressStore()
    return RedisProgressStore(client, prefix=prefix)


@pytest.fixture
def limiter(backend: tuple[str, redis.Redis | None, str]) -> RateLimiter:
    _kind, client, prefix = backend
    if client is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(client, prefix=prefix)


@pytest.fixture
def bus(backend: tuple[str, redis.Redis | None, str]) -> EventBus:
    _kind, client, prefix = backend
    if client is None:
        return MemoryEventBus()
    return RedisEventBus(client, prefix=prefix)


# -- PostgreSQL ---------------------------------------------------------------------------------

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_url() -> str:
    import os

    return os.environ.get("REFRAME_TEST_POSTGRES_URL", PG_ADMIN_URL)


def _fresh_database() -> tuple[str, object]:
    """Create an empty database next to the test one, migrated to head; returns (url, dropper)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from reframe.db import migrate

    admin_url = make_url(_admin_url())
    name = f"reframe_jobs_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    migrate(url)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """One migrated database for the session; tests isolate themselves by their own accounts."""
    url, drop = _fresh_database()
    yield url
    drop()  # type: ignore[operator]


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A database of its own, for tests (the dispatcher) that look at every job in it."""
    url, drop = _fresh_database()
    yield url
    drop()  # type: ignore[operator]


@pytest.fixture
def pg_sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    from reframe.db import make_engine, make_sessionmaker

    engine = make_engine(pg_url)
    yield make_sessionmaker(engine)
    engine.dispose()
