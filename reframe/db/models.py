"""The persistent model: accounts, keys, the credit ledger, projects, files, jobs, shares.

Money rules live in reframe.services; the schema backs them up where a database can: the
ledger is append-only (ORM guard in reframe.db.session, triggers in the migration), a job can
be charged and refunded at most once (unique (job_id, reason)), and keys are stored only as
hashes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from reframe.db.base import Base, UTCDateTime, new_id, utcnow


class JobStatus(enum.StrEnum):
    """`live_status` as the public API reports it. These strings are part of the contract."""

    PENDING = "pending"
    QUEUED = "queued"
    NO_WORKERS = "no_workers"
    COLD_START = "cold_start"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    # Beyond the reference: POST /jobs/{id}/cancel (reframe.jobs.lifecycle).
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class CreditPool(enum.StrEnum):
    """Free xeconds render watermarked; paid xeconds render clean. They never mix in one job."""

    FREE = "free"
    PAID = "paid"


class LedgerReason(enum.StrEnum):
    SIGNUP = "signup"
    GRANT = "grant"
    PURCHASE = "purchase"
    JOB_CHARGE = "job_charge"
    JOB_REFUND = "job_refund"
    ADJUSTMENT = "adjustment"


class FileRole(enum.StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class FileStatus(enum.StrEnum):
    # pending: URL handed out, bytes not yet verified; ready: size and probe checked;
    # rejected: over a limit or not a video, the object was deleted; expired: its bytes were
    # deleted, by the sweeper (abandoned or past retention, reframe.services.sweep; error_status
    # 410) or with its project (reframe.services.deletion; error_status 404).
    PENDING = "pending"
    READY = "ready"
    REJECTED = "rejected"
    EXPIRED = "expired"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable, readable in psql, and adding a
    # value later is a constraint change rather than a PostgreSQL ALTER TYPE.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # Filled by web login (studio); API-only accounts never have one.
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Signs webhook notifications (reframe.jobs.webhooks); created on first use, shown in /me.
    webhook_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set when the owner closed the account (DELETE /me, reframe.services.deletion): its keys
    # are revoked, its email replaced by a placeholder, its projects deleted; the row and its
    # ledger stay for accounting.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A keyed digest of the email the account had when it was closed (accounts.email_digest):
    # the address itself is scrubbed, but a new signup with it must not get the signup gift a
    # second time.
    closed_email_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="account")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    # The first characters of the key: shown to the owner, and used to find candidate rows
    # before the constant-time hash comparison.
    prefix: Mapped[str] = mapped_column(String(24), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    account: Mapped[Account] = relationship(back_populates="api_keys")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("job_id", "reason", name="uq_ledger_entries_job_reason"),
        CheckConstraint("delta <> 0", name="nonzero_delta"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    pool: Mapped[CreditPool] = mapped_column(_enum(CreditPool, "credit_pool"))
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[LedgerReason] = mapped_column(_enum(LedgerReason, "ledger_reason"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set when the owner deleted it (DELETE /projects/{id}): from then on it is 404 everywhere,
    # nothing new attaches to it, and its files' bytes are deleted (reframe.services.deletion).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    files: Mapped[list[File]] = relationship(
        back_populates="project", order_by="File.created_at", foreign_keys="File.project_id"
    )
    jobs: Mapped[list[Job]] = relationship(
        back_populates="project", order_by="Job.created_at.desc()"
    )
    shares: Mapped[list[Share]] = relationship(back_populates="project")


class File(Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    # Denormalised from the project so an upload key resolves to its owner in one lookup.
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    role: Mapped[FileRole] = mapped_column(_enum(FileRole, "file_role"))
    status: Mapped[FileStatus] = mapped_column(
        _enum(FileStatus, "file_status"), default=FileStatus.PENDING
    )
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    declared_size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # VideoProbe.to_dict() of the stored object, taken when its size was verified.
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The storage version (ObjectInfo.version) of the object that was probed and priced: an
    # upload URL stays valid for a while, and a render must not run on bytes nobody paid for.
    object_version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # An input, once verified, is this immutable copy (reframe.storage ObjectPin): a key no
    # URL is signed for, content-addressed by `content_sha256`. Its probe is final: the upload
    # key stays writable for a while (an S3 URL cannot be revoked) but is never read again.
    pinned_key: Mapped[str | None] = mapped_column(String(512), unique=True, nullable=True)
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pinned_version_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Why a rejected upload was refused, and the HTTP status it was refused with.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    project: Mapped[Project] = relationship(back_populates="files", foreign_keys=[project_id])

    @property
    def object_key(self) -> str:
        """Where this file's bytes are read from: the pinned copy once verified."""
        return self.pinned_key or self.storage_key


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_jobs_account_idempotency"),
        # Zero only for a preview inside the daily free allowance (reframe.services.previews).
        CheckConstraint("charged_xeconds >= 0", name="charge_not_negative"),
        CheckConstraint(
            "refunded_xeconds >= 0 AND refunded_xeconds <= charged_xeconds", name="refund_range"
        ),
        Index("ix_jobs_account_id_created_at", "account_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    input_file_id: Mapped[str] = mapped_column(ForeignKey("files.id"))
    output_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id"), nullable=True)

    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), default=JobStatus.QUEUED, index=True
    )
    target_fps: Mapped[int] = mapped_column(Integer)
    source_fps: Mapped[float] = mapped_column(Float)
    duration_sec: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))
    multiplier: Mapped[int] = mapped_column(Integer)

    # The exact object and probe the job was charged on (copied from its verified input at
    # acceptance, never changed after): the render reads this object and checks its bytes.
    # NULL for jobs accepted before migration 0006.
    input_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    input_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    input_version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    input_version_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    input_probe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The customer's render choices beyond target_fps (output format, slow motion, preview), as
    # accepted and priced; NULL is the defaults. Owned by the job-creation service.
    render_options: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    # Billing: what was taken, from which pool, and how much has been given back.
    charged_xeconds: Mapped[int] = mapped_column(Integer)
    payment_kind: Mapped[CreditPool] = mapped_column(_enum(CreditPool, "credit_pool"))
    watermarked: Mapped[bool] = mapped_column(Boolean)
    refunded_xeconds: Mapped[int] = mapped_column(Integer, default=0)

    # Progress, written by the job lifecycle while it runs.
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    frames_done: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frames_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    eta_sec: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    # Dispatch: a worker claims the job with a lease; an expired lease means the worker died.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ray_submission_id: Mapped[str | None] = mapped_column(String(128), nullable=True)

    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # sha256 of the request body the key was first used with: same key, other body -> 400.
    idempotency_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Optional receiver of signed status-change notifications (reframe.jobs.webhooks).
    webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    project: Mapped[Project] = relationship(back_populates="jobs")
    input_file: Mapped[File] = relationship(foreign_keys=[input_file_id])
    output_file: Mapped[File | None] = relationship(foreign_keys=[output_file_id])
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )


class JobEvent(Base):
    """Every status a job passed through, with when; the audit trail behind `live_status`."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="events")


class Share(Base):
    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    project: Mapped[Project] = relationship(back_populates="shares")


class WebSession(Base):
    """A studio login (reframe.services.web_auth). Only a hash of the cookie's token is kept, so
    a leaked database cannot be replayed as sessions; logging out deletes the row."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """Outbox of webhook notifications, written in the status change's own transaction.

    `next_attempt_at` is NULL once the row is settled (delivered, or given up after the last
    attempt); the sender only looks at rows where it is due.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """One operator action (reframe accounts disable, reframe jobs fail, ...): who, when, what,
    on which account or job, and why. Written in the action's own transaction; an action that
    changed nothing (run twice) writes no row."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    operator: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id"), nullable=True, index=True
    )
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), nullable=True, index=True)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
