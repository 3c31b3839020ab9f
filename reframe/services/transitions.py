"""The job state machine: which status may follow which, and recording a change.

A change is recorded in the caller's transaction: the job row, a `job_events` row with the time,
and (when the job has a webhook) a webhook outbox row, so all three commit or none do. The
returned `StatusEvent` is published by the caller after commit.

Two callers only: `services.jobs.accept` records a new job's `queued`, and the job lifecycle
(reframe.jobs.lifecycle) records every change after that.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from reframe.db.base import new_id, utcnow
from reframe.db.models import Job, JobEvent, JobStatus, WebhookDelivery
from reframe.errors import Conflict, NotFound


@dataclass(frozen=True)
class StatusEvent:
    job_id: str
    status: str
    at: float  # unix seconds
    account_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> StatusEvent:
        data = json.loads(raw)
        return cls(
            job_id=str(data["job_id"]),
            status=str(data["status"]),
            at=float(data["at"]),
            account_id=data.get("account_id"),
            detail=dict(data.get("detail") or {}),
        )


S = JobStatus
_WAITING = {S.QUEUED, S.NO_WORKERS}
_RUNNING = {S.COLD_START, S.PROCESSING}
_END = {S.DONE, S.FAILED, S.CANCELLED}

# Running states may go back to `queued` (a retry after a lost attempt); `cold_start` may go
# back to `no_workers` when the cluster could not take the render after all.
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    S.PENDING: frozenset({S.QUEUED, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.NO_WORKERS, S.COLD_START, S.FAILED, S.CANCELLED}),
    S.NO_WORKERS: frozenset({S.QUEUED, S.COLD_START, S.FAILED, S.CANCELLED}),
    S.COLD_START: frozenset({S.PROCESSING, S.DONE, S.QUEUED, S.NO_WORKERS, S.FAILED, S.CANCELLED}),
    S.PROCESSING: frozenset({S.DONE, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(Conflict):
    def __init__(self, job: Job, to: JobStatus) -> None:
        super().__init__(f"job {job.id} is {job.status.value} and cannot become {to.value}")
        self.current = job.status
        self.to = to


def can_move(src: JobStatus, dst: JobStatus) -> bool:
    return dst in ALLOWED[src]


def lock_job(session: Session, job_id: str) -> Job:
    """Load `job_id` holding its write lock until the transaction ends.

    PostgreSQL locks the row; SQLite has no row locks, but every transaction there begins
    with BEGIN IMMEDIATE (reframe.db.session), which holds the database write lock instead.
    """
    job = session.execute(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if job is None:
        raise NotFound(f"job {job_id} was not found")
    return job


class JobSnapshot(BaseModel):
    """What a webhook receiver is told about the job: a subset of GET /jobs/{id}, read off the
    row."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str = Field(validation_alias="id")
    project_id: str
    status: JobStatus
    progress: float
    frames_done: int | None
    frames_total: int | None
    output_file_id: str | None
    error: str | None
    charged_xeconds: int
    refunded_xeconds: int
    attempt: int = Field(validation_alias="attempts")


def public_fields(job: Job) -> dict[str, Any]:
    """The webhook's `data`, as JSON values."""
    return JobSnapshot.model_validate(job).model_dump(mode="json")


def note(session: Session, job: Job, message: str) -> None:
    """An entry in the job's events that changes nothing (an operator's refund of an ended
    job): the events stay the one history its owner reads."""
    session.add(JobEvent(job_id=job.id, status=job.status, message=message, at=utcnow()))
    session.flush()


def record(
    session: Session,
    job: Job,
    to: JobStatus,
    *,
    message: str | None = None,
    now: datetime | None = None,
    webhook: bool = True,
) -> StatusEvent:
    """Move `job` to `to` inside the caller's transaction (the caller holds the row lock).

    `webhook=False` leaves the outbox alone: acceptance is answered by the POST /jobs response
    itself, so receivers hear of a job from its first change after that.
    """
    if not can_move(job.status, to):
        raise IllegalTransition(job, to)
    at = now or utcnow()
    previous = job.status
    job.status = to
    job.updated_at = at
    if to in _RUNNING and job.started_at is None:
        job.started_at = at
    if to in _END:
        job.finished_at = at
        job.lease_owner = None
        job.lease_expires_at = None
        job.eta_sec = None
    if to is S.DONE:
        job.progress = 1.0
        if job.frames_total is not None:
            job.frames_done = job.frames_total
    session.add(JobEvent(job_id=job.id, status=to, message=message, at=at))
    event = StatusEvent(
        job_id=job.id,
        status=to.value,
        at=at.timestamp(),
        account_id=job.account_id,
        detail={"previous": previous.value, "message": message},
    )
    if job.webhook_url and webhook:
        delivery_id = new_id()
        session.add(
            WebhookDelivery(
                id=delivery_id,
                job_id=job.id,
                account_id=job.account_id,
                url=job.webhook_url,
                payload={
                    "id": delivery_id,
                    "type": "job.status_changed",
                    "created_at": at.isoformat(),
                    "data": {**public_fields(job), "previous_status": previous.value},
                },
                attempts=0,
                next_attempt_at=at,
                created_at=at,
            )
        )
    session.flush()
    return event
