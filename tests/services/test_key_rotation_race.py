"""Two API key rotations at once must leave exactly one live key.

On PostgreSQL (read committed) a rotation that does not lock the account reads the live keys,
revokes them and adds its own; a second rotation running alongside reads the same old key,
never sees the first one's new key, and so leaves it live: two keys, one of them possibly in a
stolen-session attacker's hands, and "replace the API key" no longer revokes it.
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from typing import Any

import pytest
from sqlalchemy import func, select, text

from reframe.config import Settings
from reframe.db import make_engine, make_sessionmaker
from reframe.db.models import ApiKey
from reframe.services import accounts
from tests.fixtures.app import ApiHarness, auth
from tests.fixtures.db import TestDatabase

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


def _live_keys(db: TestDatabase, account_id: str) -> int:
    with db.session() as s:
        count = s.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
        )
    return int(count or 0)


def _wait_until_blocked(db: TestDatabase, application_name: str, deadline_sec: float = 30) -> None:
    """Return once the backend of `application_name` waits on a lock (the real event)."""
    query = text(
        "SELECT wait_event_type FROM pg_stat_activity WHERE application_name = :name"
    ).bindparams(name=application_name)
    end = time.monotonic() + deadline_sec
    with db.engine.connect() as conn:
        while time.monotonic() < end:
            if conn.execute(query).scalar() == "Lock":
                return
            conn.rollback()  # a fresh snapshot of pg_stat_activity next time
            time.sleep(0.01)
    raise AssertionError(f"{application_name} never waited on a lock")


@pytest.mark.postgres
def test_interleaved_rotations_on_postgres_leave_one_live_key(postgres_db: TestDatabase) -> None:
    with postgres_db.session() as s:
        account, _ = accounts.create_account(s, Settings(), "race@example.com")
        s.commit()
        account_id = account.id

    # A rotates and holds its transaction open; B rotates meanwhile on its own connection.
    first = postgres_db.session()
    accounts.rotate_key(first, account_id)
    name = f"reframe-rotate-{uuid.uuid4().hex[:8]}"
    engine_b = make_engine(postgres_db.url, connect_args={"application_name": name})
    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            with make_sessionmaker(engine_b)() as s:
                outcome["issued"] = accounts.rotate_key(s, account_id)
                s.commit()
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=second)
    thread.start()
    try:
        _wait_until_blocked(postgres_db, name)
        first.commit()
    finally:
        first.close()
        thread.join(timeout=60)
        engine_b.dispose()
    assert "error" not in outcome, outcome.get("error")
    assert _live_keys(postgres_db, account_id) == 1
    with postgres_db.session() as s:  # the one left is the later rotation's
        assert accounts.authenticate(s, outcome["issued"].plaintext).id == account_id


RACERS = 4


def test_concurrent_rotations_over_http_leave_one_working_key(api: ApiHarness) -> None:
    account_id, key = api.create_account()
    barrier = threading.Barrier(RACERS)
    issued: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def rotate() -> None:
        with TestClient(api.app) as client:
            barrier.wait()
            resp = client.post("/me/api-key", headers=auth(key))
        with lock:
            statuses.append(resp.status_code)
            if resp.status_code == 200:
                issued.append(resp.json()["api_key"])

    threads = [threading.Thread(target=rotate) for _ in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # A rotation that starts after another one revoked `key` is a 401; each success counts.
    assert set(statuses) <= {200, 401}, statuses
    assert issued
    assert _live_keys(api.db, account_id) == 1
    working = [k for k in issued if api.client.get("/me", headers=auth(k)).status_code == 200]
    assert len(working) == 1
