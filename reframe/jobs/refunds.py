"""How much of a job's charge goes back, and the one refund entry that gives it back.

Exactly once is enforced twice: callers hold the job's row lock and see `refunded_xeconds`, and
the database's unique (job_id, reason) constraint on the ledger refuses a second JOB_REFUND row
even from code that forgot the lock.
"""

from __future__ import annotations

import math

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reframe.db.models import Job, JobStatus, LedgerReason
from reframe.services import ledger

# Before any frame is rendered the user has received nothing, so everything goes back.
_NOTHING_RENDERED = (
    JobStatus.PENDING,
    JobStatus.QUEUED,
    JobStatus.NO_WORKERS,
    JobStatus.COLD_START,
)


def unrendered_share(
    job: Job, frames_done: int | None = None, frames_total: int | None = None
) -> int:
    """Xeconds for the frames not rendered yet, rounded in the customer's favour.

    `frames_done`/`frames_total` default to the row's; a caller that knows newer progress
    (the live store) passes it.
    """
    total = job.frames_total if frames_total is None else frames_total
    if job.status in _NOTHING_RENDERED or not total:
        return job.charged_xeconds
    done_so_far = job.frames_done if frames_done is None else frames_done
    done = min(max(done_so_far or 0, 0), total)
    rendered = math.floor(job.charged_xeconds * done / total)
    return job.charged_xeconds - rendered


def due_on_cancel(
    job: Job, frames_done: int | None = None, frames_total: int | None = None
) -> int | None:
    """What a cancel now would give back (GET /jobs/{id}): None once the job has ended.

    The same arithmetic as the cancel itself (the unrendered share, capped as `refund` caps
    it), so the number shown is the number refunded at the same progress.
    """
    if job.status.is_terminal:
        return None
    if job.refunded_xeconds > 0:
        return 0
    left = job.charged_xeconds - job.refunded_xeconds
    return max(0, min(unrendered_share(job, frames_done, frames_total), left))


def refund(session: Session, job: Job, amount: int, note: str) -> int:
    """Give `amount` back to the pool the job was paid from; returns what was refunded.

    Returns 0 when nothing is due or the job was already refunded. Runs in a savepoint so a
    duplicate caught by the constraint leaves the caller's transaction usable.
    """
    amount = min(amount, job.charged_xeconds - job.refunded_xeconds)
    if amount <= 0 or job.refunded_xeconds > 0:
        return 0
    try:
        _give_back(session, job, amount, LedgerReason.JOB_REFUND, note)
    except IntegrityError:
        # Another transaction refunded this job first; the constraint kept it to one.
        session.refresh(job)
        return 0
    job.refunded_xeconds = amount
    return amount


def refund_rest(session: Session, job: Job, note: str) -> int:
    """Give back everything of the charge not refunded yet (an operator's refund of an ended
    job); returns the amount, 0 when nothing is left.

    A job's one JOB_REFUND entry may already exist (a cancel refunds the unrendered share), so
    the rest is then one ADJUSTMENT entry tied to the job; the (job_id, reason) constraint
    allows one of each, and after both nothing is left to give.
    """
    due = job.charged_xeconds - job.refunded_xeconds
    if due <= 0:
        return 0
    if job.refunded_xeconds == 0:
        return refund(session, job, due, note)
    _give_back(session, job, due, LedgerReason.ADJUSTMENT, note)
    job.refunded_xeconds += due
    return due


def _give_back(session: Session, job: Job, amount: int, reason: LedgerReason, note: str) -> None:
    # In a savepoint: a duplicate refused by the (job_id, reason) constraint leaves the
    # caller's transaction usable.
    with session.begin_nested():
        ledger.append(
            session,
            job.account_id,
            pool=job.payment_kind,
            delta=amount,
            reason=reason,
            job_id=job.id,
            note=note,
        )
