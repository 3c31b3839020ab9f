"""The credit ledger: every xecond in or out is one appended row; balances are sums of rows.

Nothing here commits: callers own the transaction, so a charge and the job it pays for land
together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reframe.db.models import CreditPool, LedgerEntry, LedgerReason
from reframe.errors import InvalidInput


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
