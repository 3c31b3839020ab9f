"""The real app served over real HTTP for the client's tests: uvicorn in a thread on a free
loopback port, the `db` fixture's database (SQLite and PostgreSQL), local storage whose signed
URLs point at that port. Rate limits are off unless a test asks for them, so only the tests
about 429 ever see one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from reframe_client import Reframe

from reframe.api.app import create_app
from reframe.config import Settings
from reframe.db.models import CreditPool
from reframe.services import accounts, ledger
from tests.fixtures.browser import _ServerThread, free_port
from tests.fixtures.db import TestDatabase


@dataclass
class LiveApi:
    base_url: str
    settings: Settings
    app: FastAPI
    db: TestDatabase
    tmp_path: Path

    def create_account(self, *, free: int | None = 30, paid: int = 0) -> str:
        """A new account's API key, made through the same service `reframe accounts` uses."""
        with self.db.session() as session:
            account, issued = accounts.create_account(
                session, self.settings, f"{uuid.uuid4().hex[:12]}@example.com", free_xeconds=free
            )
            if paid:
                ledger.grant(session, account.id, paid, CreditPool.PAID)
            session.commit()
            return issued.plaintext

    def client(self, key: str | None, **options: Any) -> Reframe:
        return Reframe(key, self.base_url, **options)


LiveApiFactory = Callable[..., LiveApi]


def start_live_api(stack: ExitStack, db: TestDatabase, tmp_path: Path, **overrides: Any) -> LiveApi:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "database_url": db.url,
        "storage_backend": "local",
        "public_base_url": base_url,
        "rate_limit_read_per_sec": 0,
        "rate_limit_write_per_sec": 0,
    }
    values.update(overrides)
    settings = Settings(**values)
    app = create_app(settings, engine=db.engine)
    server = _ServerThread(app, port)
    server.start()
    stack.callback(server.stop)
    return LiveApi(base_url=base_url, settings=settings, app=app, db=db, tmp_path=tmp_path)


@pytest.fixture
def live_api_factory(db: TestDatabase, tmp_path: Path) -> Iterator[LiveApiFactory]:
    """Serve the app with Settings overrides: `live_api_factory(max_upload_bytes=1000)`."""
    with ExitStack() as stack:

        def build(**overrides: Any) -> LiveApi:
            return start_live_api(stack, db, tmp_path, **overrides)

        yield build


@pytest.fixture
def live_api(live_api_factory: LiveApiFactory) -> LiveApi:
    return live_api_factory()
