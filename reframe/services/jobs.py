"""Accepting render jobs: price, pay and record in one transaction.

Acceptance is the only part of a job's life handled here. The job stays `queued`; the job
lifecycle (reframe/jobs) moves it on, and refunds through `ledger` with reason JOB_REFUND, which
the (job_id, reason) unique constraint limits to one per job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import Account, CreditPool, Job, JobStatus, LedgerReason, Project
from reframe.db.session import lock_account
from reframe.errors import InsufficientCredits, InvalidInput, NotFound, Unauthorized
from reframe.jobs.choices import RenderChoices
from reframe.logs import job_fields
from reframe.services import ledger, ownership, previews, pricing, transitions, uploads
from reframe.services.ledger import Balance
from reframe.services.pagination import PageSlice, Window, fetch_page
from reframe.services.webhooks import ensure_webhook_secret
from reframe.storage.base import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcceptedJob:
    job: Job
    balance: Balance
    replayed: bool = False  # True when an idempotency key matched an earlier job


def choose_pool(balance: Balance, charge: int) -> CreditPool:
    """Paid credit first (clean output); else free credit (watermarked); else 402."""
    if balance.paid >= charge:
        return CreditPool.PAID
    if balance.free >= charge:
        return CreditPool.FREE
    raise InsufficientCredits(
        f"Insufficient xeconds: this render needs {charge} xeconds; you have {balance.paid} paid "
        f"and {balance.free} free. A job is paid from one pool, so one of them must cover it. "
        "Buy a credit pack or choose a lower target_fps.",
        needed=charge,
        available=max(balance.paid, balance.free),
    )


def _replay(
    session: Session,
    account: Account,
    idempotency_key: str | None,
    request_hash: str | None = None,
    ttl_sec: float | None = None,
) -> Job | None:
    """The job an Idempotency-Key already created, if any (job lifecycle rules, issue 5).

    A key older than `ttl_sec` is released (the old job forgets it) so it can be reused; a key
    sent again with a different request body is refused.
    """
    if idempotency_key is None:
        return None
    earlier = session.scalar(
        select(Job).where(Job.account_id == account.id, Job.idempotency_key == idempotency_key)
    )
    if earlier is None:
        return None
    if ttl_sec is not None and earlier.created_at < utcnow() - timedelta(seconds=ttl_sec):
        earlier.idempotency_key = None
        session.flush()
        return None
    if request_hash and earlier.idempotency_hash and earlier.idempotency_hash != request_hash:
        raise InvalidInput(
            f"Idempotency-Key {idempotency_key!r} was already used with a different request "
            f"body (job {earlier.id}); use a new key for a new render"
        )
    return earlier


def accept(
    session: Session,
    storage: Storage,
    settings: Settings,
    account: Account,
    *,
    r2_key: str,
    project_id: str,
    target_fps: int,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    webhook_url: str | None = None,
    preview_seconds: float | None = None,
    choices: RenderChoices | None = None,
) -> AcceptedJob:
    """Verify the upload, price the render, take the xeconds and create the job, atomically.

    `preview_seconds`: render only the first seconds of the clip (reframe.services.previews),
    watermarked, free within the daily allowance; None renders the whole clip. `choices`
    (output format, slow motion) are checked before anything else and kept on the job as
    given; they do not change the price, which follows target_fps and the source.
    """
    choices = choices or RenderChoices()
    choices.check(target_fps)
    earlier = _replay(session, account, idempotency_key, request_hash, settings.idempotency_ttl_sec)
    if earlier is not None:
        return AcceptedJob(earlier, ledger.balance(session, account.id), replayed=True)

    project = ownership.owned_project(session, account, project_id)
    file = ownership.owned_upload(session, account, r2_key)
    if file.project_id != project.id:
        raise InvalidInput(
            f"upload {r2_key!r} belongs to project {file.project_id}, not {project_id}; "
            "send the project_id returned with it by POST /upload/presign"
        )
    probe = uploads.verify_input(session, storage, settings, file)
    # What is charged below is this object and this probe, and the job keeps both: the render
    # reads exactly this object, and nothing done to the upload afterwards reaches the job.
    pin = uploads.input_pin(file)
    duration, source_fps = float(probe["duration_sec"]), float(probe["fps"])
    # The customer's choices beyond target_fps, as the driver reads them (jobs.choices and
    # services.previews each own their keys).
    render_options: dict[str, Any] = dict(choices.to_json() or {})
    if preview_seconds is None:
        quote = pricing.require_quote(duration, source_fps, target_fps, settings)
    else:
        preview_seconds = previews.check_seconds(preview_seconds)
        quote = previews.quote(preview_seconds, duration, source_fps, target_fps, settings)
        render_options["preview"] = previews.render_option(preview_seconds)
    assert quote.charged_xeconds is not None
    assert quote.band
    assert quote.multiplier

    # End the read transaction so the money transaction starts with the lock (see lock_account).
    session.commit()
    try:
        locked = lock_account(session, account.id)
        # Deleting a project or closing the account takes this lock too: re-check both here,
        # so no job is charged on a project (or by an account) that is being deleted.
        if locked.closed_at is not None:
            raise Unauthorized("this account was closed; its API key no longer works")
        if session.scalar(select(Project.deleted_at).where(Project.id == project.id)):
            raise NotFound(f"project {project_id} was deleted by its owner")
        # Re-check under the lock: a concurrent request may have created this job already.
        earlier = _replay(
            session, account, idempotency_key, request_hash, settings.idempotency_ttl_sec
        )
        if earlier is not None:
            balance = ledger.balance(session, account.id)
            session.rollback()
            return AcceptedJob(earlier, balance, replayed=True)
        before = ledger.balance(session, account.id)
        charge = quote.charged_xeconds
        # Counted under the account lock: two requests for the last free slot cannot both
        # see it free (the second waits here until the first one's job row is committed).
        if preview_seconds is not None and previews.free_left_today(session, account.id, settings):
            charge = 0
        # A free preview takes nothing from either pool; FREE marks it as unpaid, watermarked.
        pool = choose_pool(before, charge) if charge else CreditPool.FREE
        job = Job(
            account_id=account.id,
            project_id=project.id,
            input_file_id=file.id,
            input_key=pin.key,
            input_sha256=pin.sha256,
            input_size_bytes=pin.size,
            input_version=pin.etag,
            input_version_id=pin.version_id,
            input_probe=dict(probe),
            status=JobStatus.PENDING,
            target_fps=target_fps,
            source_fps=float(probe["fps"]),
            duration_sec=float(probe["duration_sec"]),
            band=quote.band,
            multiplier=quote.multiplier,
            charged_xeconds=charge,
            payment_kind=pool,
            # A preview is always watermarked: it shows the look, it is not a deliverable.
            watermarked=pool is CreditPool.FREE or preview_seconds is not None,
            render_options=render_options or None,
            refunded_xeconds=0,
            idempotency_key=idempotency_key,
            idempotency_hash=request_hash if idempotency_key else None,
            webhook_url=webhook_url,
            frames_total=None,
        )
        session.add(job)
        if webhook_url:
            ensure_webhook_secret(session, account)
        session.flush()
        transitions.record(session, job, JobStatus.QUEUED, message="accepted", webhook=False)
        if charge:
            what = f"preview of {preview_seconds:g}s, " if preview_seconds is not None else ""
            ledger.append(
                session,
                account.id,
                pool=pool,
                delta=-charge,
                reason=LedgerReason.JOB_CHARGE,
                job_id=job.id,
                note=f"{what}{quote.band} x{quote.multiplier}, {target_fps} fps",
            )
        after = ledger.balance(session, account.id)
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        earlier = _replay(
            session, account, idempotency_key, request_hash, settings.idempotency_ttl_sec
        )
        if earlier is not None:
            return AcceptedJob(earlier, ledger.balance(session, account.id), replayed=True)
        raise InvalidInput("the job could not be recorded; retry the request") from exc
    except BaseException:
        session.rollback()
        raise
    # The first line of the job's trail: the request that accepted it is bound (reframe.logs).
    log.info(
        "job accepted: %d %s xeconds, %d fps from %s",
        job.charged_xeconds,
        pool.value,
        target_fps,
        file.storage_key,
        extra=job_fields(job.id),
    )
    return AcceptedJob(job, after)


def list_jobs(session: Session, account: Account, window: Window) -> PageSlice[Job]:
    return fetch_page(
        session,
        select(Job)
        .where(Job.account_id == account.id)
        .order_by(Job.created_at.desc(), Job.id.desc()),
        window,
    )
