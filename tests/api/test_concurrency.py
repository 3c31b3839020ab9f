"""Nothing is spent twice: concurrent POST /jobs on one account that can pay for only one."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.exceptions import StarletteDeprecationWarning

from reframe.db.models import Job, LedgerEntry
from reframe.services import ledger
from tests.fixtures.app import ApiHarness, auth

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

RACERS = 6


def _race(api: ApiHarness, key: str, up: dict[str, Any]) -> list[int]:
    """Fire RACERS POST /jobs at once, each from its own client (own connection, own thread)."""
    barrier = threading.Barrier(RACERS)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with TestClient(api.app) as client:
            barrier.wait()
            resp = client.post(
                "/jobs",
                headers=auth(key),
                json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60},
            )
        with lock:
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=one) for _ in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return statuses


def _check(api: ApiHarness, account_id: str, statuses: list[int]) -> None:
    assert sorted(statuses) == [200] + [402] * (RACERS - 1), statuses
    with api.db.session() as s:
        jobs = s.scalar(select(func.count()).select_from(Job).where(Job.account_id == account_id))
        total = s.scalar(
            select(func.sum(LedgerEntry.delta)).where(LedgerEntry.account_id == account_id)
        )
        bal = ledger.balance(s, account_id)
    assert jobs == 1
    assert total == bal.total == 1  # 3 granted, 2 charged once
    assert bal.free >= 0
    assert bal.paid >= 0


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgres"], indirect=True)
def test_concurrent_jobs_on_postgres_accept_exactly_one(api: ApiHarness) -> None:
    account_id, key = api.create_account(free=3)
    up = api.upload(key, frames=48, fps=24)  # 2 s at 60 fps = 2 xeconds; 3 cover only one
    api.client.post(  # probe once up front, so the race is about money, not probing
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": up["key"], "target_fps_options": [60]},
    )
    _check(api, account_id, _race(api, key, up))


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_concurrent_jobs_on_sqlite_accept_exactly_one(api: ApiHarness) -> None:
    account_id, key = api.create_account(free=3)
    up = api.upload(key, frames=48, fps=24)
    _check(api, account_id, _race(api, key, up))
