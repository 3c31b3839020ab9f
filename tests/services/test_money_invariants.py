"""Money invariants under concurrency (issue 12, "Proven by tools").

Several threads hit the real services at once on PostgreSQL: accepts with and without an
Idempotency-Key (retries with the same key and body, and a different body), cancels, renders
claimed by the dispatcher's lifecycle that complete, fail or lose their attempt (retry_or_fail),
direct and operator failures, operator refunds, grants and signups (some racing on one email).
Each thread's sequence of operations comes from a fixed seed; only the interleaving is left
to the scheduler, which is the point. Afterwards, for every account:

- the ledger of each pool sums to what the test granted, minus what its jobs were charged, plus
  what their rows say was refunded, and no pool is negative;
- every job has exactly one charge entry (its amount, from its pool) and no charge is orphaned;
- every failed job has exactly one refund of its whole charge; every cancelled job one refund of
  what it says it refunded (none when nothing was due); a done job none unless an operator
  refunded it; refunds never exceed the charge;
- an Idempotency-Key names one job, whatever the number of retries and racing threads;
- an end is final: a job reported done, failed or cancelled is still that (a done job is never
  failed and refunded afterwards);
- the account's history (GET /me/ledger's service) lists every entry once and sums to the
  balance.
"""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from reframe.config import Settings
from reframe.db.models import Account, CreditPool, Job, JobStatus, LedgerEntry, LedgerReason
from reframe.errors import Conflict, InsufficientCredits, InvalidInput
from reframe.jobs.lifecycle import JobLifecycle
from reframe.jobs.progress import MemoryProgressStore
from reframe.services import accounts, jobs, ledger, uploads
from reframe.services.pagination import Window
from reframe.storage import build_storage
from reframe.storage.base import Storage
from tests.fixtures.app import make_settings
from tests.fixtures.db import TestDatabase
from tests.fixtures.media import make_clip

SEED = 20261203
THREADS = 4
OPS_PER_THREAD = 120
ACCOUNTS = 4
KEYS_PER_ACCOUNT = 5
SIGNUP_EMAILS = 6
FRAMES_TOTAL = 48
MAX_ATTEMPTS = 2
STARTING_PAID = 6
# 1 s clip: 1, 2 or 4 xeconds (smooth, slo-mo, ultra), so accounts run dry now and then (402).
TARGET_FPS = (48, 120, 240)


@dataclass
class Payer:
    account_id: str
    r2_key: str
    project_id: str
    # Each key always goes with the same body (its target fps), so reusing it is a retry.
    keys: dict[str, int]
    # Never credited: each of its accepts must be a 402 that charges nothing.
    broke: bool = False


@dataclass
class Shared:
    """What the threads learn, under one lock; the database stays the only record of money."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    job_ids: list[str] = field(default_factory=list)
    key_jobs: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    granted: dict[tuple[str, CreditPool], int] = field(default_factory=lambda: defaultdict(int))
    operator_refunded: set[str] = field(default_factory=set)
    # The end each job was reported to reach: an end state is final, so a done job is never
    # failed (and refunded) later, nor a cancelled one.
    ended: dict[str, JobStatus] = field(default_factory=dict)
    signups: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[BaseException] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def end(self, job_id: str, status: JobStatus) -> None:
        with self.lock:
            assert self.ended.setdefault(job_id, status) is status, (job_id, status)


def _body_hash(payer: Payer, target_fps: int) -> str:
    return hashlib.sha256(f"{payer.r2_key}|{payer.project_id}|{target_fps}".encode()).hexdigest()


class World:
    def __init__(
        self, db: TestDatabase, settings: Settings, storage: Storage, payers: list[Payer]
    ) -> None:
        self.db = db
        self.settings = settings
        self.storage = storage
        self.payers = payers
        self.shared = Shared()
        # One lifecycle for all threads, as the API and the dispatcher share theirs.
        self.life = JobLifecycle(
            db.sessionmaker, progress=MemoryProgressStore(), db_progress_interval_sec=0.0
        )

    # -- operations ---------------------------------------------------------------------------

    def accept(self, rng: random.Random) -> None:
        payer = rng.choice(self.payers)
        key: str | None = None
        target = rng.choice(TARGET_FPS)
        if rng.random() < 0.6:
            key = rng.choice(list(payer.keys))
            target = payer.keys[key]
        with self.db.session() as session:
            account = session.get(Account, payer.account_id)
            assert account is not None
            try:
                accepted = jobs.accept(
                    session,
                    self.storage,
                    self.settings,
                    account,
                    r2_key=payer.r2_key,
                    project_id=payer.project_id,
                    target_fps=target,
                    idempotency_key=key,
                    request_hash=_body_hash(payer, target),
                )
            except InsufficientCredits:
                self.shared.count("accept 402")
                if payer.broke:
                    self.shared.count("accept 402 broke")
                return
            job_id = accepted.job.id
            assert accepted.balance.free >= 0, accepted.balance
            assert accepted.balance.paid >= 0, accepted.balance
        with self.shared.lock:
            if not accepted.replayed:
                self.shared.job_ids.append(job_id)
            if key is not None:
                self.shared.key_jobs[(payer.account_id, key)].add(job_id)
        self.shared.count("accept replayed" if accepted.replayed else "accept new")

    def accept_other_body(self, rng: random.Random) -> None:
        """A used key with another body is refused and charges nothing."""
        payer = rng.choice(self.payers)
        with self.shared.lock:
            used = [k for (a, k) in self.shared.key_jobs if a == payer.account_id]
        if not used:
            return
        key = rng.choice(used)
        target = next(fps for fps in TARGET_FPS if fps != payer.keys[key])
        with self.db.session() as session:
            account = session.get(Account, payer.account_id)
            assert account is not None
            with pytest.raises(InvalidInput, match="different request body"):
                jobs.accept(
                    session,
                    self.storage,
                    self.settings,
                    account,
                    r2_key=payer.r2_key,
                    project_id=payer.project_id,
                    target_fps=target,
                    idempotency_key=key,
                    request_hash=_body_hash(payer, target),
                )
        self.shared.count("accept other body 400")

    def _some_job(self, rng: random.Random) -> Job | None:
        with self.shared.lock:
            if not self.shared.job_ids:
                return None
            job_id = rng.choice(self.shared.job_ids)
        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            session.expunge(job)
            return job

    def cancel(self, rng: random.Random) -> None:
        job = self._some_job(rng)
        if job is None:
            return
        try:
            self.life.cancel(job.id, job.account_id)
            self.shared.end(job.id, JobStatus.CANCELLED)
            self.shared.count("cancel")
        except Conflict:
            self.shared.count("cancel 409")

    def render(self, rng: random.Random) -> None:
        """What the dispatcher and the render driver do with the oldest waiting job."""
        claim = self.life.claim_next(
            f"dispatcher-{threading.get_ident()}", timedelta(minutes=5), capacity=1000
        )
        if claim is None:
            return
        report = self.life.tracker(claim.job_id, claim.attempt)
        if rng.random() < 0.8:
            report(rng.randint(0, FRAMES_TOTAL), FRAMES_TOTAL)
        outcome = rng.choice(("complete", "complete", "fail", "lost", "lost", "keep running"))
        if outcome == "complete":
            with self.db.session() as session:
                job = session.get(Job, claim.job_id)
                assert job is not None
                output = uploads.register_output(
                    session,
                    job,
                    key=f"outputs/{job.id}/{claim.attempt}/{uuid.uuid4().hex}.mp4",
                    filename="out.mp4",
                    size_bytes=1000,
                )
                output_id = output.id
                session.commit()
            if self.life.complete(claim.job_id, output_id, attempt=claim.attempt):
                self.shared.end(claim.job_id, JobStatus.DONE)
        elif outcome == "fail":
            failed = self.life.fail(claim.job_id, "the render failed", attempt=claim.attempt)
            if failed.changed:
                self.shared.end(claim.job_id, JobStatus.FAILED)
        elif outcome == "lost":
            self.life.retry_or_fail(claim.job_id, claim.attempt, "node lost", MAX_ATTEMPTS)
        self.shared.count(f"render {outcome}")

    def fail_any(self, rng: random.Random) -> None:
        """A failure that may arrive for a job in any state (a stale driver, a timeout)."""
        job = self._some_job(rng)
        if job is None:
            return
        attempt = job.attempts if rng.random() < 0.7 else None
        if self.life.fail(job.id, "time limit reached", attempt=attempt).changed:
            self.shared.end(job.id, JobStatus.FAILED)
        self.shared.count("fail")

    def operator_fail(self, rng: random.Random) -> None:
        job = self._some_job(rng)
        if job is None:
            return
        try:
            settled = self.life.operator_fail(job.id, "stuck render, failing it", operator="test")
            if settled.changed:
                self.shared.end(job.id, JobStatus.FAILED)
            self.shared.count("operator fail")
        except Conflict:
            self.shared.count("operator fail 409")

    def operator_refund(self, rng: random.Random) -> None:
        job = self._some_job(rng)
        if job is None:
            return
        try:
            amount = self.life.operator_refund(job.id, "customer complaint", operator="test")
        except Conflict:
            self.shared.count("operator refund 409")
            return
        if amount:
            with self.shared.lock:
                self.shared.operator_refunded.add(job.id)
        self.shared.count("operator refund")

    def grant(self, rng: random.Random) -> None:
        payer = rng.choice([p for p in self.payers if not p.broke])
        pool = rng.choice((CreditPool.FREE, CreditPool.PAID))
        amount = rng.randint(1, 6)
        with self.db.session() as session:
            ledger.grant(session, payer.account_id, amount, pool, note="test grant")
            session.commit()
        with self.shared.lock:
            self.shared.granted[(payer.account_id, pool)] += amount
        self.shared.count("grant")

    def signup(self, rng: random.Random) -> None:
        email = f"signup{rng.randrange(SIGNUP_EMAILS)}@example.com"
        with self.db.session() as session:
            try:
                accounts.create_account(session, self.settings, email)
                session.commit()
            except Conflict:
                self.shared.count("signup 409")
                return
        with self.shared.lock:
            self.shared.signups[email] += 1
        self.shared.count("signup")

    # -- driving ------------------------------------------------------------------------------

    def run_thread(self, index: int, barrier: threading.Barrier) -> None:
        rng = random.Random(SEED * 100 + index)
        ops = (
            (self.accept, 6),
            (self.accept_other_body, 1),
            (self.cancel, 2),
            (self.render, 5),
            (self.fail_any, 1),
            (self.operator_fail, 1),
            (self.operator_refund, 1),
            (self.grant, 2),
            (self.signup, 1),
        )
        choices = [op for op, _ in ops]
        weights = [w for _, w in ops]
        try:
            barrier.wait()
            for _ in range(OPS_PER_THREAD):
                rng.choices(choices, weights)[0](rng)
        except BaseException as exc:  # reported by the main thread
            with self.shared.lock:
                self.shared.errors.append(exc)


def _payer(
    db: TestDatabase,
    settings: Settings,
    storage: Storage,
    clip: Path,
    index: int,
    *,
    broke: bool = False,
) -> Payer:
    with db.session() as session:
        account, _ = accounts.create_account(
            session, settings, f"payer{index}@example.com", free_xeconds=0 if broke else None
        )
        if not broke:
            ledger.grant(session, account.id, STARTING_PAID, CreditPool.PAID, note="starting")
        session.commit()
        presigned = uploads.presign(
            session, storage, settings, account, filename="clip.mp4", content_type="video/mp4"
        )
        payer = Payer(
            account_id=account.id,
            r2_key=presigned.file.storage_key,
            project_id=presigned.project.id,
            keys={
                f"key-{index}-{k}": TARGET_FPS[k % len(TARGET_FPS)] for k in range(KEYS_PER_ACCOUNT)
            },
            broke=broke,
        )
        session.commit()
        storage.upload_file(clip, payer.r2_key, "video/mp4")
        # Probed once here, so the threads race on money rather than on probing.
        uploads.verify_input(session, storage, settings, presigned.file)
        session.commit()
    return payer


def _check_invariants(
    db: TestDatabase, world: World, starting: dict[str, dict[CreditPool, int]]
) -> None:
    shared = world.shared
    with db.session() as session:
        entries = session.scalars(select(LedgerEntry)).all()
        all_jobs = {j.id: j for j in session.scalars(select(Job))}
        account_ids = list(session.scalars(select(Account.id)))
        emails = dict(session.execute(select(Account.id, Account.email)).tuples().all())

        by_job: dict[str, list[LedgerEntry]] = defaultdict(list)
        for entry in entries:
            if entry.job_id is not None:
                by_job[entry.job_id].append(entry)
        assert set(by_job) <= set(all_jobs), "ledger entries for jobs that do not exist"

        for account_id in account_ids:
            bal = ledger.balance(session, account_id)
            for pool in CreditPool:
                rows = [e for e in entries if e.account_id == account_id and e.pool is pool]
                own_jobs = [
                    j
                    for j in all_jobs.values()
                    if j.account_id == account_id and j.payment_kind is pool
                ]
                expected = (
                    starting.get(account_id, {}).get(pool, 0)
                    + shared.granted[(account_id, pool)]
                    - sum(j.charged_xeconds for j in own_jobs)
                    + sum(j.refunded_xeconds for j in own_jobs)
                )
                assert sum(e.delta for e in rows) == bal.of(pool) == expected, (
                    emails[account_id],
                    pool,
                )
                assert bal.of(pool) >= 0, (emails[account_id], pool, bal)

        for job in all_jobs.values():
            rows = by_job[job.id]
            charges = [e for e in rows if e.reason is LedgerReason.JOB_CHARGE]
            refunds = [e for e in rows if e.reason is LedgerReason.JOB_REFUND]
            adjustments = [e for e in rows if e.reason is LedgerReason.ADJUSTMENT]
            assert len(charges) == 1, (job.id, job.status, charges)
            assert charges[0].delta == -job.charged_xeconds
            assert charges[0].pool is job.payment_kind
            assert charges[0].account_id == job.account_id
            assert all(e.pool is job.payment_kind and e.delta > 0 for e in refunds + adjustments)
            given_back = sum(e.delta for e in refunds + adjustments)
            assert given_back == job.refunded_xeconds <= job.charged_xeconds, job.id
            assert job.status.is_terminal or not (refunds or adjustments), (job.id, job.status)
            operator = job.id in shared.operator_refunded
            if job.status is JobStatus.FAILED:
                # A failure gives everything back, in one entry (an operator has nothing left
                # to add to it).
                assert len(refunds) == 1, (job.id, rows)
                assert not adjustments, (job.id, rows)
                assert refunds[0].delta == job.charged_xeconds
            elif job.status is JobStatus.CANCELLED:
                # The cancel's own refund (the unrendered share) is one entry, absent only
                # when nothing was left to refund; an operator may add the rest once.
                assert len(refunds) == (1 if job.refunded_xeconds else 0), (job.id, rows)
                assert len(adjustments) <= 1
                assert not adjustments or operator
                if operator:
                    assert job.refunded_xeconds == job.charged_xeconds
            elif job.status is JobStatus.DONE:
                assert not adjustments
                assert len(refunds) == (1 if operator else 0), (job.id, rows)
                if operator:
                    assert refunds[0].delta == job.charged_xeconds

        # GET /me/ledger's history: every entry once, newest first, summing to the balance, and
        # a cancel's refund told apart from a failure's and the operator's.
        for account_id in account_ids:
            page = ledger.history(session, account_id, Window(limit=10_000, offset=0))
            lines, total = page.rows, page.total
            own = [e for e in entries if e.account_id == account_id]
            assert total == len(lines) == len(own)
            assert [line.entry_id for line in lines] == sorted((e.id for e in own), reverse=True)
            assert sum(line.amount for line in lines) == ledger.balance(session, account_id).total
            for line in lines:
                job = all_jobs.get(line.job_id or "")
                if line.kind is ledger.LedgerKind.CANCEL:
                    assert job is not None
                    assert job.status is JobStatus.CANCELLED
                if job is None or line.kind is ledger.LedgerKind.CHARGE:
                    continue
                if job.status is JobStatus.FAILED:
                    assert line.kind is ledger.LedgerKind.REFUND, line
                elif job.status is JobStatus.CANCELLED and line.kind is ledger.LedgerKind.REFUND:
                    assert job.id in shared.operator_refunded, line  # not the cancel's own

        for job_id, status in shared.ended.items():
            assert all_jobs[job_id].status is status, (job_id, status, all_jobs[job_id].status)

        for (account_id, key), job_ids in shared.key_jobs.items():
            assert len(job_ids) == 1, (key, job_ids)
            keyed = [
                j
                for j in all_jobs.values()
                if j.account_id == account_id and j.idempotency_key == key
            ]
            assert [j.id for j in keyed] == list(job_ids)
        assert len(all_jobs) == len(set(shared.job_ids))

        for email, created in shared.signups.items():
            assert created == 1, email
            signup_rows = session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .join(Account, Account.id == LedgerEntry.account_id)
                .where(Account.email == email, LedgerEntry.reason == LedgerReason.SIGNUP)
            )
            assert signup_rows == 1, email


@pytest.mark.postgres
def test_money_invariants_under_concurrent_traffic(
    postgres_db: TestDatabase, tmp_path: Path
) -> None:
    # A small signup gift, so accounts run dry now and then and accepts meet the 402.
    settings = make_settings(tmp_path, postgres_db, free_xeconds_on_signup=8)
    storage = build_storage(settings)
    clip = make_clip(tmp_path / "clip.mp4")
    payers = [_payer(postgres_db, settings, storage, clip, i) for i in range(ACCOUNTS)]
    broke = _payer(postgres_db, settings, storage, clip, ACCOUNTS, broke=True)
    starting = {
        p.account_id: {
            CreditPool.FREE: settings.free_xeconds_on_signup,
            CreditPool.PAID: STARTING_PAID,
        }
        for p in payers
    }
    payers.append(broke)
    world = World(postgres_db, settings, storage, payers)
    barrier = threading.Barrier(THREADS)
    threads = [
        threading.Thread(target=world.run_thread, args=(i, barrier), name=f"money-{i}")
        for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung (a lock never released?)"
    if world.shared.errors:
        raise world.shared.errors[0]

    with postgres_db.session() as session:
        for email in world.shared.signups:
            account = accounts.get_by_email(session, email)
            starting[account.id] = {CreditPool.FREE: settings.free_xeconds_on_signup}
    _check_invariants(postgres_db, world, starting)

    # The run must have exercised what it claims to (the seed fixes each thread's choices).
    counts = world.shared.counts
    for what in (
        "accept new",
        "accept 402 broke",
        "accept replayed",
        "accept other body 400",
        "cancel",
        "render complete",
        "render fail",
        "render lost",
        "operator refund",
        "grant",
        "signup",
        "signup 409",
    ):
        assert counts[what] > 0, (what, dict(counts))
