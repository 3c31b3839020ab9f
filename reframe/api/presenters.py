"""Model rows -> response bodies. Kept apart from routes so several routers share them.

Each response model reads its fields off the row (`RowModel`, `from_attributes`); what is not
an attribute of the row (a value inside the probe, a fresh URL, a computed refund) is laid over
it with `Overlay`, so no field is copied by hand.
"""

from __future__ import annotations

from typing import Any

from reframe.api.schemas import (
    FileOut,
    JobCreatedOut,
    JobOut,
    JobSummaryOut,
    OutputOut,
    ProjectOut,
    SharedFileOut,
)
from reframe.config import Settings
from reframe.db.models import File, FileRole, FileStatus, Job, JobStatus, Project
from reframe.jobs.choices import RenderChoices
from reframe.jobs.refunds import due_on_cancel
from reframe.services import previews
from reframe.services.jobs import AcceptedJob
from reframe.services.projects import file_url
from reframe.services.sweep import file_expires_at
from reframe.storage.base import Storage


class Overlay:
    """`row`'s attributes with `values` laid over them: what a response model validates from."""

    def __init__(self, row: object, **values: Any) -> None:
        self._row = row
        self._values = values

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__["_values"]
        return values[name] if name in values else getattr(self.__dict__["_row"], name)


def _probed(file: File) -> dict[str, Any]:
    """The probe's numbers a file shows (all None before the upload is verified)."""
    probe = file.probe or {}
    return {name: probe.get(name) for name in ("duration_sec", "fps", "width", "height")}


def file_out(file: File, settings: Settings) -> FileOut:
    return FileOut.model_validate(
        Overlay(file, expires_at=file_expires_at(file, settings), **_probed(file))
    )


def shared_file(file: File, url: str) -> SharedFileOut:
    return SharedFileOut.model_validate(Overlay(file, url=url, **_probed(file)))


def _preview_fields(job: Job) -> dict[str, Any]:
    seconds = previews.preview_seconds_of(job.render_options)
    return {"preview": seconds is not None, "preview_seconds": seconds}


def job_created(accepted: AcceptedJob) -> JobCreatedOut:
    return JobCreatedOut.model_validate(Overlay(accepted, **_preview_fields(accepted.job)))


def output_out(job: Job, settings: Settings) -> tuple[OutputOut, int | None]:
    """The job's output format (defaults filled in as the render fills them) and its
    playback rate when it is slow motion."""
    choices = RenderChoices.from_json(job.render_options)
    resolved = choices.resolve(
        job.target_fps, default_codec=settings.render_codec, default_crf=settings.render_crf
    )
    fmt = resolved.format
    audio = "copy" if fmt.audio else "none"
    out = OutputOut.model_validate(Overlay(fmt, quality=resolved.quality, audio=audio))
    return out, choices.playback_fps


def job_out(job: Job, storage: Storage, settings: Settings) -> JobOut:
    output_url = None
    output = job.output_file
    output_format, playback_fps = output_out(job, settings)
    if job.status is JobStatus.DONE and output is not None and output.status is FileStatus.READY:
        output_url = file_url(storage, settings, output)
    return JobOut.model_validate(
        Overlay(
            job,
            output_url=output_url,
            output=output_format,
            playback_fps=playback_fps,
            # None for probes stored before the flag existed.
            source_variable_frame_rate=(job.input_file.probe or {}).get("variable_frame_rate"),
            cancel_refund_xeconds=due_on_cancel(job),
            **_preview_fields(job),
        )
    )


def job_summary(job: Job) -> JobSummaryOut:
    return JobSummaryOut.model_validate(
        Overlay(job, preview=previews.preview_seconds_of(job.render_options) is not None)
    )


def project_out(
    project: Project,
    settings: Settings,
    share_url: str | None,
    share_page_url: str | None = None,
) -> ProjectOut:
    files = [file_out(f, settings) for f in project.files]
    return ProjectOut.model_validate(
        Overlay(
            project,
            inputs=[f for f in files if f.role is FileRole.INPUT],
            outputs=[f for f in files if f.role is FileRole.OUTPUT],
            jobs=[job_summary(j) for j in project.jobs],
            share_url=share_url,
            share_page_url=share_page_url,
        )
    )
