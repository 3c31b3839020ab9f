"""The audit trail of operator actions (reframe.cli): one row per change, none for a no-op.

Rows are written in the transaction of the change they describe, so the trail never claims a
change that rolled back, and never misses one that committed.
"""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reframe.db.models import AuditEntry
from reframe.errors import InvalidInput

MAX_REASON_CHARS = 1000


def default_operator() -> str:
    """Who runs the command: REFRAME_OPERATOR, else the login name and host."""
    named = os.environ.get("REFRAME_OPERATOR")
    if named:
        return named
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = f"uid-{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def check_reason(reason: str) -> str:
    cleaned = " ".join(reason.split())
    if not cleaned:
        raise InvalidInput("give a --reason: it is kept in the audit log")
    if len(cleaned) > MAX_REASON_CHARS:
        raise InvalidInput(f"keep the --reason under {MAX_REASON_CHARS} characters")
    return cleaned


def record(
    session: Session,
    *,
    operator: str,
    action: str,
    reason: str,
    account_id: str | None = None,
    job_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        operator=operator[:255],
        action=action,
        reason=check_reason(reason),
        account_id=account_id,
        job_id=job_id,
        detail=detail,
    )
    session.add(entry)
    session.flush()
    return entry


def entries(
    session: Session, *, account_id: str | None = None, job_id: str | None = None
) -> list[AuditEntry]:
    """Rows about one job, or about an account (its own and its jobs'), oldest first."""
    query = select(AuditEntry).order_by(AuditEntry.at, AuditEntry.id)
    if job_id is not None:
        query = query.where(AuditEntry.job_id == job_id)
    elif account_id is not None:
        query = query.where(AuditEntry.account_id == account_id)
    return list(session.scalars(query))
