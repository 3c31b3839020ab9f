"""The ownership rule for every account-owned resource.

Each `owned_*` function is the single place its resource is fetched for an account: unknown ids
are NotFound (404), other accounts' ids are Forbidden (403), and a project its owner deleted
(reframe.services.deletion) is NotFound with everything in it. Routes never query these tables
directly, so a forgotten owner check cannot happen.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from reframe.db.models import Account, File, Job, Project
from reframe.errors import Forbidden, NotFound

# Every id this service hands out (reframe.db.base.new_id). Anything else names nothing, and is
# not sent to the database: PostgreSQL cannot even compare a string holding NUL (a 500).
_ID = re.compile(r"[0-9a-f]{32}")


def _is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def owned_project(session: Session, account: Account, project_id: str) -> Project:
    project = session.get(Project, project_id) if _is_id(project_id) else None
    if project is None:
        raise NotFound(f"project {project_id} not found")
    if project.account_id != account.id:
        raise Forbidden(f"project {project_id} belongs to another account")
    if project.deleted_at is not None:
        raise NotFound(
            f"project {project_id} was deleted by its owner; its files, download URLs and "
            "share links are gone"
        )
    return project


def owned_file(session: Session, account: Account, project_id: str, file_id: str) -> File:
    project = owned_project(session, account, project_id)
    file = session.get(File, file_id) if _is_id(file_id) else None
    if file is None or file.project_id != project.id:
        raise NotFound(f"file {file_id} not found in project {project_id}")
    return file


def owned_upload(session: Session, account: Account, key: str) -> File:
    """The input file stored under `key` (the `r2_key` of the API)."""
    file = session.scalar(select(File).where(File.storage_key == key))
    if file is None:
        raise NotFound(f"no upload with key {key!r}; get one from POST /upload/presign")
    if file.account_id != account.id:
        raise Forbidden(f"upload {key!r} belongs to another account")
    if file.project.deleted_at is not None:
        raise NotFound(f"upload {key!r} was deleted with its project {file.project_id}")
    return file


def owned_job(session: Session, account: Account, job_id: str) -> Job:
    # Everything GET /jobs/{id} shows, in one query instead of four: clients poll this.
    if not _is_id(job_id):
        raise NotFound(f"job {job_id} not found")
    job = session.get(
        Job,
        job_id,
        options=[
            joinedload(Job.input_file),
            joinedload(Job.output_file),
            joinedload(Job.events),
        ],
    )
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.account_id != account.id:
        raise Forbidden(f"job {job_id} belongs to another account")
    return job
