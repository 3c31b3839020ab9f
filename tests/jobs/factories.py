"""Plain factories for lifecycle tests: accounts with credit, and accepted jobs.

`accepted_job` writes what acceptance writes (job row, `queued` event, the charge) so the
lifecycle can be tested without a stored upload; the end-to-end tests go through the API.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from reframe.config import Settings
from reframe.db.models import (
    Account,
    CreditPool,
    File,
    FileRole,
    FileStatus,
    Job,
    JobEvent,
    JobStatus,
    LedgerReason,
    Project,
)
from reframe.services import accounts, ledger


def account_with_credit(
    sessions: sessionmaker[Session], *, free: int = 0, paid: int = 0
) -> Account:
    with sessions() as session:
        account, _key = accounts.create_account(
            session, Settings(), f"{uuid.uuid4().hex[:12]}@example.com", free_xeconds=free
        )
        if paid:
            ledger.grant(session, account.id, paid, CreditPool.PAID, reason=LedgerReason.PURCHASE)
        session.commit()
        session.expunge(account)
        return account


def accepted_job(
    sessions: sessionmaker[Session],
    account: Account,
    *,
    charge: int = 10,
    pool: CreditPool = CreditPool.PAID,
    webhook_url: str | None = None,
    frames_total: int | None = None,
    duration_sec: float = 4.0,
) -> str:
    with sessions() as session:
        project = Project(account_id=account.id, name="clip")
        session.add(project)
        session.flush()
        source = File(
            project_id=project.id,
            account_id=account.id,
            role=FileRole.INPUT,
            status=FileStatus.READY,
            storage_key=f"uploads/{account.id}/{uuid.uuid4().hex}/clip.mp4",
            filename="clip.mp4",
            content_type="video/mp4",
        )
        session.add(source)
        session.flush()
        job = Job(
            account_id=account.id,
            project_id=project.id,
            input_file_id=source.id,
            status=JobStatus.QUEUED,
            target_fps=60,
            source_fps=24.0,
            duration_sec=duration_sec,
            band="smooth",
            multiplier=1,
            charged_xeconds=charge,
            payment_kind=pool,
            watermarked=pool is CreditPool.FREE,
            refunded_xeconds=0,
            frames_total=frames_total,
            webhook_url=webhook_url,
        )
        session.add(job)
        session.flush()
        session.add(JobEvent(job_id=job.id, status=JobStatus.QUEUED, message="accepted"))
        ledger.append(
            session,
            account.id,
            pool=pool,
            delta=-charge,
            reason=LedgerReason.JOB_CHARGE,
            job_id=job.id,
        )
        session.commit()
        return job.id
