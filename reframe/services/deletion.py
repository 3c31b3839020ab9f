"""What a customer asks to be deleted goes: one project (DELETE /projects/{id}) or the whole
account (DELETE /me).

Deleting a project, in this order:
1. Under the account's lock (the lock `jobs.accept` charges under), the project is marked
   deleted and its share links are deleted, in one transaction. From that commit on it is 404
   everywhere (services.ownership), no job can be accepted on it, and a render still in flight
   cannot register its output into it (`ensure_live_project`, from uploads.register_output).
2. Its waiting and running jobs are cancelled through `JobLifecycle.cancel`, the owner's
   cancel: the usual refund, at most once, because the lifecycle refunds only under the job's
   lock and never for a job that already ended.
3. Every file's bytes are deleted through the storage interface (erasure.delete_file_bytes, the
   sweeper's own step) and the row keeps nothing of the customer's: no name, probe, hash or key.

Rows stay as tombstones: jobs and the append-only ledger point at them, and the ledger is kept
for accounting. An upload key whose URL can still be used (an S3 URL cannot be revoked) keeps
its key until that URL has expired; the sweeper then deletes it again and forgets it
(sweep.sweep_deleted_files), as it does for a delete that failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import (
    Account,
    ApiKey,
    File,
    FileStatus,
    Job,
    JobStatus,
    Project,
    Share,
    WebhookDelivery,
    WebSession,
)
from reframe.db.session import lock_account
from reframe.errors import Conflict, InvalidInput, NotFound
from reframe.jobs.lifecycle import JobLifecycle
from reframe.services import accounts, audit, ownership
from reframe.services.erasure import project_deleted, purge_file
from reframe.storage.base import Storage

log = logging.getLogger(__name__)

DELETED_FILE = "This file was deleted with its project by the project's owner."
DELETED_NAME = "deleted"
CLOSED_EMAIL_DOMAIN = "closed.invalid"

_LIVE = [s for s in JobStatus if not s.is_terminal]


@dataclass
class ProjectDeletion:
    project_id: str
    cancelled_jobs: list[str] = field(default_factory=list)
    refunded_xeconds: int = 0
    files: int = 0
    shares: int = 0
    # Files whose bytes the sweeper still has to delete for good (see the module docstring).
    pending_files: int = 0


@dataclass
class AccountClosure:
    account_id: str
    projects: list[ProjectDeletion] = field(default_factory=list)


def _fresh_transaction(session: Session) -> None:
    if session.in_transaction():
        session.commit()


def delete_project(
    session: Session,
    storage: Storage,
    settings: Settings,
    lifecycle: JobLifecycle,
    account: Account,
    project_id: str,
) -> ProjectDeletion:
    """Delete the project `project_id` of `account` (see the module docstring)."""
    account_id = account.id
    ownership.owned_project(session, account, project_id)  # 404 / 403, deleted included
    _fresh_transaction(session)
    try:
        lock_account(session, account_id)
        # The account's lock serializes this with jobs.accept and ensure_live_project.
        project = session.get(Project, project_id, populate_existing=True)
        if project is None or project.deleted_at is not None:
            raise project_deleted(project_id)  # a concurrent DELETE got here first
        result = ProjectDeletion(project_id=project_id)
        project.deleted_at = utcnow()
        project.name = DELETED_NAME
        shares = session.execute(delete(Share).where(Share.project_id == project_id))
        result.shares = int(getattr(shares, "rowcount", 0) or 0)
        live = session.scalars(
            select(Job.id).where(Job.project_id == project_id, Job.status.in_(_LIVE))
        ).all()
        session.commit()
    except BaseException:
        session.rollback()
        raise

    for job_id in live:
        try:
            _, settled = lifecycle.cancel(job_id, account_id)
        except Conflict:
            continue  # it ended on its own meanwhile, with its own outcome and refund
        result.cancelled_jobs.append(job_id)
        result.refunded_xeconds += settled.refunded

    now = utcnow()
    try:
        # Every job has ended now and none can start: nothing reads these rows' keys again.
        session.execute(
            update(Job)
            .where(Job.project_id == project_id)
            .values(
                input_key=None,
                input_sha256=None,
                input_probe=None,
                input_version=None,
                input_version_id=None,
                webhook_url=None,
            )
            .execution_options(synchronize_session=False)
        )
        file_ids = session.scalars(select(File.id).where(File.project_id == project_id)).all()
        session.execute(
            update(File)
            .where(File.project_id == project_id)
            .values(
                status=FileStatus.EXPIRED,
                error=DELETED_FILE,
                error_status=404,
                filename=DELETED_NAME,
                probe=None,
                content_sha256=None,
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    result.files = len(file_ids)
    sessions = lifecycle.sessions
    for file_id in file_ids:
        try:
            done = purge_file(sessions, storage, settings, file_id, now=now)
        except Exception:
            log.exception("deleting the bytes of file %s failed; the sweeper retries", file_id)
            done = False
        if not done:
            result.pending_files += 1
    log.info(
        "project %s deleted by its owner: %d jobs cancelled (%d xeconds refunded), %d files, "
        "%d share links; %d files left for the sweeper",
        project_id,
        len(result.cancelled_jobs),
        result.refunded_xeconds,
        result.files,
        result.shares,
        result.pending_files,
    )
    return result


def check_confirmation(account: Account, confirm: str | None) -> None:
    """Closing an account needs its email repeated: a stray call cannot wipe it."""
    if confirm is None or not confirm.strip():
        raise InvalidInput(
            "closing an account deletes all its projects and stops its API key for good: "
            "repeat the account's email as ?confirm=<email> to go ahead"
        )
    try:
        given = accounts.normalize_email(confirm)
    except InvalidInput:
        given = None
    if given != account.email:
        raise InvalidInput(
            "confirm does not match this account's email; nothing was deleted. Send "
            "?confirm=<the email shown by GET /me>"
        )


def close_account(
    session: Session,
    storage: Storage,
    settings: Settings,
    lifecycle: JobLifecycle,
    account: Account,
    confirm: str | None,
) -> AccountClosure:
    """Close `account` for good: keys revoked and studio sessions ended first (so nothing new
    starts), every project deleted as by `delete_project`, then the row anonymized. The ledger
    stays, untouched, for accounting; the balance it sums to is forfeited, not zeroed."""
    check_confirmation(account, confirm)
    account_id = account.id
    _fresh_transaction(session)
    try:
        locked = lock_account(session, account_id)
        if locked.closed_at is not None:
            raise NotFound(f"account {account_id} is already closed")
        now = utcnow()
        locked.closed_at = now
        session.execute(
            update(ApiKey)
            .where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(delete(WebSession).where(WebSession.account_id == account_id))
        session.commit()
    except BaseException:
        session.rollback()
        raise

    closure = AccountClosure(account_id=account_id)
    # A request authenticated just before the keys were revoked may still add a project: look
    # again until none is left.
    for _ in range(3):
        left = session.scalars(
            select(Project.id).where(Project.account_id == account_id, Project.deleted_at.is_(None))
        ).all()
        session.commit()
        if not left:
            break
        for project_id in left:
            try:
                closure.projects.append(
                    delete_project(session, storage, settings, lifecycle, account, project_id)
                )
            except NotFound:
                continue  # deleted concurrently

    try:
        locked = lock_account(session, account_id)
        # In the same commit as the scrub, so a signup that finds the address free also finds
        # that it had an account (reframe.services.accounts.create_account).
        locked.closed_email_digest = accounts.email_digest(settings, locked.email)
        locked.email = f"closed-{account_id}@{CLOSED_EMAIL_DOMAIN}"
        locked.password_hash = None
        locked.webhook_secret = None
        # Undelivered notifications carry the customer's receiver URL and job details.
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.account_id == account_id))
        audit.record(
            session,
            operator="owner",
            action="account.close",
            reason="closed by its owner (DELETE /me)",
            account_id=account_id,
            detail={
                "projects_deleted": len(closure.projects),
                "jobs_cancelled": sum(len(p.cancelled_jobs) for p in closure.projects),
            },
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info("account %s closed by its owner", account_id)
    return closure
