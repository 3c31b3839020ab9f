"""Render jobs: start one (credits are taken here), poll it, list them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from reframe.api.deps import (
    Credentials,
    CurrentAccount,
    SessionDep,
    SettingsDep,
    StorageDep,
    authenticate_request,
    request_session,
)
from reframe.api.errors import error_responses
from reframe.api.presenters import job_public
from reframe.api.routes.jobs_lifecycle import with_live_progress
from reframe.api.routes.me import balance_out
from reframe.api.schemas import MAX_PAGE_OFFSET, JobCreate, JobCreated, JobPublic, Page
from reframe.services import jobs, projects

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "",
    response_model=JobCreated,
    summary="Start a render. Credits are deducted when the job is accepted",
    responses=error_responses(400, 401, 402, 403, 404, 413, 500),
)
def create_job(
    body: JobCreate,
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description=(
                "Repeat a POST safely: the same key with the same body returns the job it "
                "created first and charges once (keys are kept 24 h); the same key with a "
                "different body is refused with 400"
            ),
        ),
    ] = None,
) -> JobCreated:
    import hashlib

    from reframe.jobs.webhooks import check_destination

    if body.webhook_url is not None:
        check_destination(body.webhook_url, allow_private=settings.webhook_allow_private)
    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    accepted = jobs.accept(
        session,
        storage,
        settings,
        account,
        r2_key=body.r2_key,
        project_id=body.project_id,
        target_fps=body.target_fps,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        webhook_url=body.webhook_url,
    )
    job = accepted.job
    return JobCreated(
        job_id=job.id,
        project_id=job.project_id,
        live_status=job.status,
        charged_xeconds=job.charged_xeconds,
        band=job.band,
        multiplier=job.multiplier,
        payment_kind=job.payment_kind,
        watermarked=job.watermarked,
        balance=balance_out(accepted.balance),
    )


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    summary="Poll render status until done or failed",
    responses=error_responses(401, 403, 404, 500),
)
async def read_job(job_id: str, request: Request, credentials: Credentials) -> JobPublic:
    # The hot path of every client (they poll this until done): authentication, the job read
    # and the live-progress lookup run in one thread-pool hop instead of one per dependency.
    # Each hop is a cross-thread hand-off that cost more than the work itself
    # (bench/polling.py).
    return await run_in_threadpool(_read_job, request, credentials, job_id)


def _read_job(
    request: Request, credentials: HTTPAuthorizationCredentials | None, job_id: str
) -> JobPublic:
    state = request.app.state
    with request_session(request) as session:
        account = authenticate_request(request, session, credentials)
        job = projects.owned_job(session, account, job_id)
        out = job_public(job, state.storage, state.settings)
    return with_live_progress(request, out)


@router.get(
    "",
    response_model=Page[JobPublic],
    summary="List recent jobs for the account",
    responses=error_responses(400, 401, 500),
)
def list_jobs(
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET)] = 0,
) -> Page[JobPublic]:
    rows, total = jobs.list_jobs(session, account, limit=limit, offset=offset)
    return Page[JobPublic](
        items=[job_public(j, storage, settings) for j in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=offset + len(rows) if offset + len(rows) < total else None,
    )
