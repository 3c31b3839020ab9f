"""Two preview requests at once for an account's last free preview: exactly one is free.

The allowance is a count of the day's free previews, read and acted on in the transaction that
creates the job. Without the account lock, two requests on PostgreSQL (read committed) would
both count the same rows, both see a free slot and both render for nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from reframe.config import Settings
from reframe.db import make_engine, make_sessionmaker
from reframe.db.models import Account, Job, LedgerEntry
from reframe.db.session import lock_account
from reframe.services import accounts, jobs, ledger, uploads
from reframe.storage import build_storage
from tests.fixtures.app import make_settings
from tests.fixtures.db import TestDatabase
from tests.fixtures.media import make_clip

RACERS = 2


def _waiting_on_locks(db: TestDatabase, names: list[str], deadline_sec: float = 30) -> None:
    """Return once every backend in `names` waits on a lock (the real event, not a sleep)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = ANY(:names) AND wait_event_type = 'Lock'"
    ).bindparams(names=names)
    end = time.monotonic() + deadline_sec
    with db.engine.connect() as conn:
        while time.monotonic() < end:
            if conn.execute(query).scalar() == len(names):
                return
            conn.rollback()
            time.sleep(0.01)
    raise AssertionError(f"{names} never all waited on the account lock")


@pytest.mark.postgres
def test_two_previews_at_the_last_free_slot_are_not_both_free(
    postgres_db: TestDatabase, tmp_path: Path
) -> None:
    settings: Settings = make_settings(tmp_path, postgres_db, preview_free_per_day=1)
    storage = build_storage(settings)
    clip = make_clip(tmp_path / "clip.mp4", frames=48, fps=24)  # 2 s
    with postgres_db.session() as s:
        account, _ = accounts.create_account(s, settings, "race@example.com", free_xeconds=30)
        s.commit()
        account_id = account.id
        presigned = uploads.presign(
            s, storage, settings, account, filename="clip.mp4", content_type="video/mp4"
        )
        key, project_id = presigned.file.storage_key, presigned.project.id
        s.commit()
    storage.upload_file(clip, key, "video/mp4")

    # The main thread holds the account lock while both requests start, so both are past
    # their reads and queued on the lock; released, they run against each other.
    holder = postgres_db.session()
    lock_account(holder, account_id)
    names = [f"reframe-preview-{uuid.uuid4().hex[:8]}" for _ in range(RACERS)]
    outcomes: dict[str, Any] = {}
    engines = [make_engine(postgres_db.url, connect_args={"application_name": n}) for n in names]

    def request(name: str, engine: Any) -> None:
        try:
            with make_sessionmaker(engine)() as s:
                payer = s.get(Account, account_id)
                assert payer is not None
                accepted = jobs.accept(
                    s,
                    storage,
                    settings,
                    payer,
                    r2_key=key,
                    project_id=project_id,
                    target_fps=60,
                    preview_seconds=2,
                )
                outcomes[name] = accepted.job.charged_xeconds
        except BaseException as exc:  # reported by the main thread
            outcomes[name] = exc

    threads = [
        threading.Thread(target=request, args=(n, e), name=n)
        for n, e in zip(names, engines, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        _waiting_on_locks(postgres_db, names)
        holder.rollback()
    finally:
        holder.close()
        for t in threads:
            t.join(timeout=60)
        for e in engines:
            e.dispose()

    charges = sorted(outcomes.values(), key=str)
    assert all(isinstance(c, int) for c in charges), charges
    assert charges == [0, 2]  # one free preview, one charged ceil(2) x 1
    with postgres_db.session() as s:
        rows = s.scalars(select(Job).where(Job.account_id == account_id)).all()
        assert sorted(j.charged_xeconds for j in rows) == [0, 2]
        assert all(
            j.watermarked and j.render_options == {"preview": {"seconds": 2.0}} for j in rows
        )
        charged = s.scalars(select(LedgerEntry).where(LedgerEntry.delta < 0)).all()
        assert [e.delta for e in charged if e.account_id == account_id] == [-2]
        assert ledger.balance(s, account_id).free == 28
