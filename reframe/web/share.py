"""What the public share page shows: the project's original and its newest finished render.

Built from the same services as `GET /share/{token}`. The view holds only what a reviewer needs
(video URLs, frame rates, resolution, duration); nothing about the account that owns it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from reframe.config import Settings
from reframe.db.models import File, FileRole, FileStatus, Job, JobStatus
from reframe.services import shares
from reframe.storage.base import Storage


def _fps(value: object) -> str | None:
    if isinstance(value, int | float) and value > 0:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return None


def _newest_done_job(jobs: list[Job]) -> Job | None:
    done = [job for job in jobs if job.status == JobStatus.DONE and job.output_file_id]
    return max(done, key=lambda job: job.finished_at or job.created_at) if done else None


def build(db: Session, storage: Storage, settings: Settings, token: str) -> dict[str, Any]:
    """Template context for `/s/{token}`; NotFound for unknown or revoked tokens."""
    share = shares.live_share(db, token)
    project = share.project
    job = _newest_done_job(list(project.jobs))
    before: File | None = job.input_file if job is not None else None
    if before is None:
        ready = [
            f for f in project.files if f.role == FileRole.INPUT and f.status == FileStatus.READY
        ]
        before = ready[-1] if ready else None
    after = job.output_file if job is not None else None

    context: dict[str, Any] = {
        "title": project.name or "Shared video",
        "compare_id": "share",
        "before_url": None,
        "after_url": None,
        "after_download_url": None,
        "before_fps": None,
        "after_fps": None,
        "details": [],
    }
    if before is not None and storage.head(before.object_key) is not None:
        context["before_url"] = shares.file_url(storage, settings, share, before, inline=True)
        probe = before.probe or {}
        context["before_fps"] = _fps(probe.get("fps"))
        details: list[tuple[str, str]] = []
        if context["before_fps"]:
            details.append(("Original frame rate", f"{context['before_fps']} fps"))
        if probe.get("width") and probe.get("height"):
            details.append(("Resolution", f"{probe['width']} × {probe['height']}"))
        if isinstance(probe.get("duration_sec"), int | float):
            details.append(("Duration", f"{probe['duration_sec']:.2f} s"))
        context["details"] = details
    if after is not None and job is not None and storage.head(after.object_key) is not None:
        context["after_url"] = shares.file_url(storage, settings, share, after, inline=True)
        context["after_download_url"] = shares.file_url(storage, settings, share, after)
        context["after_fps"] = _fps(job.target_fps)
        context["details"].append(("Rendered frame rate", f"{context['after_fps']} fps"))
    return context
