"""The credit ledger: every xecond in or out is one appended row; balances are sums of rows.

Nothing here commits: callers own the transaction, so a charge and the job it pays for land
together or not at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reframe.db.models import CreditPool, Job, JobStatus, LedgerEntry, LedgerReason
from reframe.errors import InvalidInput
from reframe.services import previews
from reframe.services.pagination import PageSlice, Window, fetch_page


@dataclass(frozen=True)
class Balance:
    free: int
    paid: int

    @property
    def total(self) -> int:
        return self.free + self.paid

    def of(self, pool: CreditPool) -> int:
        return self.free if pool is CreditPool.FREE else self.paid


def balance(session: Session, account_id: str) -> Balance:
    rows = session.execute(
        select(LedgerEntry.pool, func.coalesce(func.sum(LedgerEntry.delta), 0))
        .where(LedgerEntry.account_id == account_id)
        .group_by(LedgerEntry.pool)
    ).all()
    sums = {CreditPool(pool): int(total) for pool, total in rows}
    return Balance(free=sums.get(CreditPool.FREE, 0), paid=sums.get(CreditPool.PAID, 0))


def append(
    session: Session,
    account_id: str,
    *,
    pool: CreditPool,
    delta: int,
    reason: LedgerReason,
    job_id: str | None = None,
    note: str | None = None,
) -> LedgerEntry:
    if delta == 0:
        raise InvalidInput("a ledger entry must move at least one xecond")
    entry = LedgerEntry(
        account_id=account_id, pool=pool, delta=delta, reason=reason, job_id=job_id, note=note
    )
    session.add(entry)
    session.flush()
    return entry


def grant(
    session: Session,
    account_id: str,
    xeconds: int,
    pool: CreditPool,
    *,
    reason: LedgerReason = LedgerReason.GRANT,
    note: str | None = None,
) -> LedgerEntry:
    """Add xeconds to one pool (operator grants, purchases, the signup gift)."""
    if xeconds <= 0:
        raise InvalidInput(f"xeconds to grant must be a positive whole number; got {xeconds}")
    return append(session, account_id, pool=pool, delta=xeconds, reason=reason, note=note)


# --- the account's own history (GET /me/ledger) -----------------------------------------------


# `cancel` and `refund` are both a job's one JOB_REFUND row; they differ by what gave the
# credit back (the owner's cancel; a failure or the operator), which the owner tells apart.
class LedgerKind(enum.StrEnum):
    """What a ledger entry was: credit in, a render's charge, or credit given back."""

    SIGNUP = "signup"
    GRANT = "grant"
    PURCHASE = "purchase"
    CHARGE = "charge"
    REFUND = "refund"
    CANCEL = "cancel"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True)
class LedgerLine:
    entry_id: int
    kind: LedgerKind
    amount: int  # signed, as stored: a charge is negative
    pool: CreditPool
    job_id: str | None
    description: str
    created_at: datetime


_KINDS = {
    LedgerReason.SIGNUP: LedgerKind.SIGNUP,
    LedgerReason.GRANT: LedgerKind.GRANT,
    LedgerReason.PURCHASE: LedgerKind.PURCHASE,
    LedgerReason.JOB_CHARGE: LedgerKind.CHARGE,
    LedgerReason.JOB_REFUND: LedgerKind.REFUND,
    LedgerReason.ADJUSTMENT: LedgerKind.ADJUSTMENT,
}


def _kind(entry: LedgerEntry, job: Job | None) -> LedgerKind:
    if entry.reason is not LedgerReason.JOB_REFUND or job is None:
        return _KINDS[entry.reason]
    # A refund is written only when a job ends or after (reframe.jobs.refunds). The cancel's
    # is written in the transaction that ends the job, so it is not later than finished_at; an
    # operator's refund of a job already cancelled comes after it.
    by_cancel = job.status is JobStatus.CANCELLED and (
        job.finished_at is None or entry.created_at <= job.finished_at
    )
    return LedgerKind.CANCEL if by_cancel else LedgerKind.REFUND


def _describe(kind: LedgerKind, entry: LedgerEntry, job: Job | None) -> str:
    # Built from the entry's kind and its job, never from `note`: notes are written by
    # operators and by failure handling for the operator's eyes.
    render = f"render at {job.target_fps} fps ({job.band}, x{job.multiplier})" if job else "render"
    seconds = previews.preview_seconds_of(job.render_options) if job else None
    if seconds is not None:
        render = f"preview of {seconds:g} s, {render}"
    if kind is LedgerKind.CHARGE:
        return f"Charge for a {render}"
    if kind is LedgerKind.CANCEL:
        whole = job is not None and entry.delta >= job.charged_xeconds
        part = "the whole charge" if whole else "the frames not rendered"
        return f"Refund of {part}: you cancelled a {render}"
    if kind is LedgerKind.REFUND:
        if job is not None and job.status is JobStatus.FAILED:
            return f"Refund: a {render} failed"
        return f"Refund by the operator for a {render}"
    if kind is LedgerKind.ADJUSTMENT:
        return f"Adjustment by the operator for a {render}" if job else "Adjustment by the operator"
    return {
        LedgerKind.SIGNUP: "Signup credit",
        LedgerKind.GRANT: "Credit granted by the operator",
        LedgerKind.PURCHASE: "Credit pack purchased",
    }[kind]


def history(session: Session, account_id: str, window: Window) -> PageSlice[LedgerLine]:
    """One page of the account's entries, newest first, and how many there are in all.

    Newest by id: ids follow insertion, while `created_at` comes from each writer's clock.
    """
    page = fetch_page(
        session,
        select(LedgerEntry, Job)
        .outerjoin(Job, Job.id == LedgerEntry.job_id)
        .where(LedgerEntry.account_id == account_id)
        .order_by(LedgerEntry.id.desc()),
        window,
    )
    return page.map(_line)


def _line(row: Any) -> LedgerLine:
    entry, job = row
    kind = _kind(entry, job)
    return LedgerLine(
        entry_id=entry.id,
        kind=kind,
        amount=entry.delta,
        pool=entry.pool,
        job_id=entry.job_id,
        description=_describe(kind, entry, job),
        created_at=entry.created_at,
    )
