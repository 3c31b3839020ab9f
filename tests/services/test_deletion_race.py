"""Deleting a project while jobs are being accepted on it and renders register their outputs
(issue 13 part 6), on SQLite and PostgreSQL.

Whatever the interleaving: no job is left waiting or running on the deleted project, none was
accepted after the deletion, each job is charged once and refunded at most once (the ledger sums
to the balance), no output of the project is ready, and none of its bytes is left in storage.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from reframe.db.models import (
    CreditPool,
    File,
    FileStatus,
    Job,
    JobStatus,
    LedgerEntry,
    LedgerReason,
)
from reframe.db.session import make_sessionmaker
from reframe.errors import InsufficientCredits, NotFound
from reframe.jobs.lifecycle import JobLifecycle
from reframe.services import accounts, deletion, jobs, ledger, uploads
from reframe.storage import build_storage
from reframe.storage.base import new_object_key
from reframe.storage.local import LocalStorage
from tests.fixtures.app import make_settings
from tests.fixtures.db import TestDatabase
from tests.fixtures.media import make_clip

ACCEPTERS = 2
RENDERERS = 2
ROUNDS = 200  # at most; the threads go on until a while after the deletion returned
AFTER_SEC = 0.5
RENDER_SEC = 0.1


def test_deletion_races_accepts_and_output_registrations(db: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db)
    storage = build_storage(settings)
    assert isinstance(storage, LocalStorage)
    clip = make_clip(tmp_path / "clip.mp4", frames=24, fps=24)
    life = JobLifecycle(make_sessionmaker(db.engine))
    with db.session() as session:
        account, _ = accounts.create_account(session, settings, "racer@example.com")
        ledger.grant(session, account.id, 500, CreditPool.PAID, note="race")
        session.commit()
        presigned = uploads.presign(
            session, storage, settings, account, filename="clip.mp4", content_type="video/mp4"
        )
        account_id, project_id = account.id, presigned.project.id
        r2_key = presigned.file.storage_key
        session.commit()
        storage.upload_file(clip, r2_key, "video/mp4")
        uploads.verify_input(session, storage, settings, presigned.file)
        session.commit()

    start = threading.Barrier(ACCEPTERS + RENDERERS + 1)
    refused: list[str] = []
    errors: list[BaseException] = []
    # The deletion starts once some jobs exist, so it races the rest rather than winning alone.
    some_accepted = threading.Event()
    accepted = [0]
    stop = threading.Event()

    def accepter() -> None:
        start.wait()
        for _ in range(ROUNDS):
            if stop.is_set():
                return
            with db.session() as session:
                owner = accounts.get_by_email(session, "racer@example.com")
                try:
                    jobs.accept(
                        session,
                        storage,
                        settings,
                        owner,
                        r2_key=r2_key,
                        project_id=project_id,
                        target_fps=60,
                    )
                except (NotFound, InsufficientCredits) as exc:
                    refused.append(type(exc).__name__)
                    continue
                accepted[0] += 1
                if accepted[0] >= 3:
                    some_accepted.set()

    def renderer(index: int) -> None:
        start.wait()
        for _ in range(ROUNDS):
            if stop.is_set():
                return
            claim = life.claim_next(f"worker-{index}", timedelta(minutes=5), capacity=8)
            if claim is None:
                time.sleep(0.01)
                continue
            with db.session() as session:
                job = session.get(Job, claim.job_id)
                assert job is not None
                session.expunge(job)
            time.sleep(RENDER_SEC)  # the render itself: the window a deletion lands in
            key = new_object_key(f"outputs/{account_id}/{project_id}", "out.mp4")
            storage.upload_file(clip, key, "video/mp4")
            # What the driver does (reframe.jobs.driver.render_stored_job, run_attempt); a job
            # it leaves waiting or running here was accepted after the deletion: caught below.
            with db.session() as session:
                try:
                    output = uploads.register_output(
                        session, job, key=key, filename="out.mp4", size_bytes=1
                    )
                    output_id = output.id
                    session.commit()
                except NotFound:
                    session.rollback()
                    storage.delete(key)
                    continue
            life.complete(claim.job_id, output_id, attempt=claim.attempt)

    def guarded(target: object, *args: object) -> None:
        try:
            target(*args)  # type: ignore[operator]
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(accepter,)) for _ in range(ACCEPTERS)]
    threads += [threading.Thread(target=guarded, args=(renderer, i)) for i in range(RENDERERS)]
    for t in threads:
        t.start()
    start.wait()
    some_accepted.wait(timeout=60)
    with db.session() as session:
        owner = accounts.get_by_email(session, "racer@example.com")
        deletion.delete_project(session, storage, settings, life, owner, project_id)
    time.sleep(AFTER_SEC)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung (a lock never released?)"
    assert errors == []

    with db.session() as session:
        project_jobs = session.scalars(select(Job).where(Job.project_id == project_id)).all()
        assert project_jobs, "no job was accepted before the deletion; the race did not run"
        assert all(j.status.is_terminal for j in project_jobs), [j.status for j in project_jobs]
        entries = session.scalars(select(LedgerEntry)).all()
        for job in project_jobs:
            charges = [e for e in entries if e.job_id == job.id and e.delta < 0]
            refunds = [e for e in entries if e.job_id == job.id and e.delta > 0]
            assert [-e.delta for e in charges] == [job.charged_xeconds]
            assert len(refunds) <= 1
            assert sum(e.delta for e in refunds) == job.refunded_xeconds
            if job.status is JobStatus.CANCELLED:
                assert job.refunded_xeconds == job.charged_xeconds  # nothing was rendered
            assert all(e.reason is LedgerReason.JOB_REFUND for e in refunds)
        total = session.scalar(
            select(func.sum(LedgerEntry.delta)).where(LedgerEntry.account_id == account_id)
        )
        assert ledger.balance(session, account_id).total == total
        files = session.scalars(select(File).where(File.project_id == project_id)).all()
        assert all(f.status is FileStatus.EXPIRED for f in files)
    left = [p for p in storage.root.rglob("*") if p.is_file() and project_id in str(p)]
    assert left == []
