"""Model rows -> response bodies. Kept apart from routes so several routers share them."""

from __future__ import annotations

from reframe.api.schemas import (
    FilePublic,
    JobEventOut,
    JobPublic,
    JobSummary,
    OutputPublic,
    ProjectPublic,
    SharedFile,
)
from reframe.config import Settings
from reframe.db.models import File, FileRole, FileStatus, Job, JobStatus, Project
from reframe.jobs.choices import RenderChoices
from reframe.jobs.refunds import due_on_cancel
from reframe.services.projects import file_url
from reframe.services.sweep import file_expires_at
from reframe.storage.base import Storage


def _probe_float(file: File, name: str) -> float | None:
    value = (file.probe or {}).get(name)
    return float(value) if value is not None else None


def _probe_int(file: File, name: str) -> int | None:
    value = (file.probe or {}).get(name)
    return int(value) if value is not None else None


def _variable_rate(file: File) -> bool | None:
    """From the input's probe; None for probes stored before the flag existed."""
    value = (file.probe or {}).get("variable_frame_rate")
    return bool(value) if value is not None else None


def file_public(file: File, settings: Settings) -> FilePublic:
    return FilePublic(
        expires_at=file_expires_at(file, settings),
        file_id=file.id,
        role=file.role,
        status=file.status,
        filename=file.filename,
        content_type=file.content_type,
        size_bytes=file.size_bytes,
        key=file.storage_key,
        created_at=file.created_at,
        duration_sec=_probe_float(file, "duration_sec"),
        fps=_probe_float(file, "fps"),
        width=_probe_int(file, "width"),
        height=_probe_int(file, "height"),
    )


def shared_file(file: File, url: str) -> SharedFile:
    return SharedFile(
        file_id=file.id,
        role=file.role,
        filename=file.filename,
        content_type=file.content_type,
        size_bytes=file.size_bytes,
        duration_sec=_probe_float(file, "duration_sec"),
        fps=_probe_float(file, "fps"),
        width=_probe_int(file, "width"),
        height=_probe_int(file, "height"),
        url=url,
    )


def output_public(job: Job, settings: Settings) -> tuple[OutputPublic, int | None]:
    """The job's output format (defaults filled in as the render fills them) and its
    playback rate when it is slow motion."""
    choices = RenderChoices.from_json(job.render_options)
    resolved = choices.resolve(
        job.target_fps, default_codec=settings.render_codec, default_crf=settings.render_crf
    )
    fmt = resolved.format
    out = OutputPublic(
        container=fmt.container,
        codec=fmt.codec,
        quality=resolved.quality,
        crf=fmt.crf,
        prores_profile=fmt.prores_profile,
        audio="copy" if fmt.audio else "none",
    )
    return out, choices.playback_fps


def job_public(job: Job, storage: Storage, settings: Settings) -> JobPublic:
    output_url = None
    output = job.output_file
    output_format, playback_fps = output_public(job, settings)
    if job.status is JobStatus.DONE and output is not None and output.status is FileStatus.READY:
        output_url = file_url(storage, settings, output)
    return JobPublic(
        job_id=job.id,
        project_id=job.project_id,
        r2_key=job.input_file.storage_key,
        live_status=job.status,
        progress=job.progress,
        frames_done=job.frames_done,
        frames_total=job.frames_total,
        eta_sec=job.eta_sec,
        error=job.error,
        output_file_id=job.output_file_id,
        output_url=output_url,
        target_fps=job.target_fps,
        output=output_format,
        playback_fps=playback_fps,
        source_fps=job.source_fps,
        source_variable_frame_rate=_variable_rate(job.input_file),
        duration_sec=job.duration_sec,
        band=job.band,
        multiplier=job.multiplier,
        charged_xeconds=job.charged_xeconds,
        refunded_xeconds=job.refunded_xeconds,
        payment_kind=job.payment_kind,
        watermarked=job.watermarked,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        events=[JobEventOut(status=e.status, at=e.at, message=e.message) for e in job.events],
        cancel_refund_xeconds=due_on_cancel(job),
    )


def job_summary(job: Job) -> JobSummary:
    return JobSummary(
        job_id=job.id,
        live_status=job.status,
        target_fps=job.target_fps,
        charged_xeconds=job.charged_xeconds,
        watermarked=job.watermarked,
        output_file_id=job.output_file_id,
        created_at=job.created_at,
    )


def project_public(
    project: Project,
    settings: Settings,
    share_url: str | None,
    share_page_url: str | None = None,
) -> ProjectPublic:
    return ProjectPublic(
        project_id=project.id,
        name=project.name,
        created_at=project.created_at,
        inputs=[file_public(f, settings) for f in project.files if f.role is FileRole.INPUT],
        outputs=[file_public(f, settings) for f in project.files if f.role is FileRole.OUTPUT],
        jobs=[job_summary(j) for j in project.jobs],
        share_url=share_url,
        share_page_url=share_page_url,
    )
