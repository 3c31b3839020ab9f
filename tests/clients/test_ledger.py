"""The client's `ledger()` / `iter_ledger()` (sync and async), `reframe-client ledger`, and the
job's `cancel_refund_xeconds`, against the real app over real HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from reframe_client import AsyncReframe
from reframe_client import models as m
from reframe_client.cli import main

from tests.clients.conftest import LiveApi
from tests.fixtures.media import make_clip


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", frames=24, fps=24)  # 1 s


def test_ledger_pages_sum_to_the_balance_and_show_the_cancel(live_api: LiveApi, clip: Path) -> None:
    key = live_api.create_account(free=30, paid=10)
    with live_api.client(key) as client:
        up = client.upload(clip)
        job = client.create_job(up.key, up.project_id, 120)  # 2 xeconds, paid
        assert client.get_job(job.job_id).cancel_refund_xeconds == 2
        cancelled = client.cancel_job(job.job_id)
        assert cancelled.refunded_xeconds == 2
        assert cancelled.cancel_refund_xeconds is None

        page = client.ledger(limit=2)
        assert isinstance(page, m.LedgerPage)
        assert (page.total, page.limit, page.offset, page.next_offset) == (4, 2, 0, 2)
        assert [(e.kind, e.amount_xeconds) for e in page.items] == [
            (m.LedgerKind.CANCEL, 2),
            (m.LedgerKind.CHARGE, -2),
        ]
        assert page.items[0].job_id == job.job_id
        assert page.items[0].pool is m.CreditPool.PAID
        entries = list(client.iter_ledger(page_size=3))
        assert [e.kind for e in entries[2:]] == [m.LedgerKind.GRANT, m.LedgerKind.SIGNUP]
        assert sum(e.amount_xeconds for e in entries) == page.balance.total_xeconds == 40
        assert client.me().balance == page.balance


def test_async_ledger_reads_the_same(live_api: LiveApi) -> None:
    key = live_api.create_account(free=30, paid=5)

    async def read() -> tuple[m.LedgerPage, list[m.LedgerEntry]]:
        async with AsyncReframe(key, live_api.base_url) as client:
            page = await client.ledger()
            entries = [e async for e in client.iter_ledger(page_size=1)]
            return page, entries

    page, entries = asyncio.run(read())
    assert page.items == entries
    assert [e.kind for e in entries] == [m.LedgerKind.GRANT, m.LedgerKind.SIGNUP]
    assert page.balance.total_xeconds == 35


def test_the_ledger_command(
    live_api: LiveApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    key = live_api.create_account(free=30, paid=5)
    argv = ["ledger", "--api-url", live_api.base_url, "--api-key", key]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "balance: 35 xeconds (5 paid, 30 free)" in out
    assert "Signup credit" in out
    assert "+30" in out
    assert main([*argv, "--json", "--limit", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["total"], data["next_offset"], data["items"][0]["kind"]) == (2, 1, "grant")
