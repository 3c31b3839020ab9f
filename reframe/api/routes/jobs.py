"""Render jobs: start one (credits are taken here), poll it, list them."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from reframe.api.deps import (
    Credentials,
    CurrentAccount,
    LifecycleDep,
    PageDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    authenticate_request,
    request_session,
)
from reframe.api.errors import error_responses
from reframe.api.presenters import job_created, job_out
from reframe.api.schemas import JobCreatedOut, JobCreateIn, JobOut, Page
from reframe.db.models import Job
from reframe.jobs.choices import OutputChoice, RenderChoices
from reframe.jobs.progress import ProgressStore, overlay_live
from reframe.jobs.refunds import due_on_cancel
from reframe.services import jobs, ownership
from reframe.services.webhooks import check_destination

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "",
    response_model=JobCreatedOut,
    summary="Start a render. Credits are deducted when the job is accepted",
    responses=error_responses(400, 401, 402, 403, 404, 410, 413, 500),
)
def create_job(
    body: JobCreateIn,
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
) -> JobCreatedOut:
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
        preview_seconds=body.preview_length(),
        choices=render_choices(body),
    )
    return job_created(accepted)


def render_choices(body: JobCreateIn) -> RenderChoices:
    """The request's output and slow-motion choices, with only the fields the client sent."""
    output = None
    if body.output is not None:
        given = body.output.model_dump(exclude_unset=True)
        output = OutputChoice(**given)
    return RenderChoices(output=output, playback_fps=body.playback_fps)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="Poll render status until done or failed",
    responses=error_responses(401, 403, 404, 500),
)
async def read_job(job_id: str, request: Request, credentials: Credentials) -> JobOut:
    # The hot path of every client (they poll this until done): authentication, the job read
    # and the live-progress lookup run in one thread-pool hop instead of one per dependency.
    # Each hop is a cross-thread hand-off that cost more than the work itself
    # (bench/polling.py).
    return await run_in_threadpool(_read_job, request, credentials, job_id)


def _read_job(
    request: Request, credentials: HTTPAuthorizationCredentials | None, job_id: str
) -> JobOut:
    state = request.app.state
    with request_session(request) as session:
        account = authenticate_request(request, session, credentials)
        job = ownership.owned_job(session, account, job_id)
        out = job_out(job, state.storage, state.settings)
        return with_live_progress(state.progress, job, out)


def with_live_progress(store: ProgressStore, job: Job, out: JobOut) -> JobOut:
    """`out` with the live store's progress when it is newer than the row's."""
    live = store.get(job.id) if out.live_status.value == "processing" else None
    if live is None:
        return out
    progress, frames_done, eta_sec = overlay_live(job, live)
    frames_total = out.frames_total or live.frames_total
    return out.model_copy(
        update={
            "progress": progress,
            "frames_done": frames_done,
            "frames_total": frames_total,
            "eta_sec": eta_sec,
            # The cancel bills from the same live progress (JobLifecycle.cancel).
            "cancel_refund_xeconds": due_on_cancel(job, frames_done, frames_total),
        }
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a queued or running render",
    description=(
        "Stops the render and sets `live_status` to `cancelled`. Before any frame is rendered "
        "(queued, no_workers, cold_start) the whole charge is refunded; while processing, the "
        "share of the frames not yet rendered is refunded (`refunded_xeconds`). Cancelling a "
        "job that already ended returns 409."
    ),
    responses=error_responses(401, 403, 404, 409, 500),
)
def cancel_job(
    job_id: str,
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    lifecycle: LifecycleDep,
) -> JobOut:
    ownership.owned_job(session, account, job_id)  # 404 / 403 with the service's messages
    account_id = account.id
    # End the request's transaction before the lifecycle takes the job's lock in its own: on
    # SQLite an open transaction here would hold the database write lock against it. (Reading
    # `account.id` after the rollback would open one again, hence the copy above.)
    session.rollback()
    lifecycle.cancel(job_id, account_id)
    session.expire_all()
    return job_out(ownership.owned_job(session, account, job_id), storage, settings)


@router.get(
    "",
    response_model=Page[JobOut],
    summary="List recent jobs for the account",
    responses=error_responses(400, 401, 500),
)
def list_jobs(
    account: CurrentAccount,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    window: PageDep,
) -> Page[JobOut]:
    page = jobs.list_jobs(session, account, window)
    return Page[JobOut].of(page, [job_out(j, storage, settings) for j in page.rows])
