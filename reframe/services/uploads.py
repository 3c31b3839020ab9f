"""Direct uploads: hand out a signed PUT URL, then verify what actually arrived.

A presigned PUT cannot cap the size on S3, so nothing the client declared is trusted: before an
estimate or a job, the object's real size (HEAD) and duration (probe) are checked, and an object
over a limit is deleted and its row marked rejected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import Account, File, FileRole, FileStatus, Job, Project
from reframe.errors import (
    Conflict,
    Gone,
    InvalidInput,
    InvalidMedia,
    NotFound,
    ObjectChanged,
    RateLimited,
    ReframeError,
    TooLarge,
)
from reframe.services import pricing
from reframe.services.erasure import ensure_live_project
from reframe.storage.base import (
    OPAQUE_TYPE,
    ObjectPin,
    Storage,
    new_object_key,
    safe_filename,
)
from reframe.video.probe import ProbeLimits, probe_video

MAX_FILENAME = 255

# FFmpeg's demuxer names (VideoProbe.container) for the families below.
_MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
_MATROSKA_FAMILY = "matroska,webm"

# The names an upload may have: its extension -> the type it is served as once verified, and
# the demuxer that must have read it for that to hold. Uploads are served back from storage
# (on the API's origin with the local backend), so a name the browser could treat as a page
# (.html, .svg, .xml, .js...) is refused at presign, before any byte is stored under it.
UPLOAD_EXTENSIONS: dict[str, tuple[str, str]] = {
    ".mp4": ("video/mp4", _MP4_FAMILY),
    ".m4v": ("video/mp4", _MP4_FAMILY),
    ".mov": ("video/quicktime", _MP4_FAMILY),
    ".3gp": ("video/3gpp", _MP4_FAMILY),
    ".3g2": ("video/3gpp2", _MP4_FAMILY),
    ".mkv": ("video/x-matroska", _MATROSKA_FAMILY),
    ".webm": ("video/webm", _MATROSKA_FAMILY),
    ".avi": ("video/x-msvideo", "avi"),
    ".ts": ("video/mp2t", "mpegts"),
    ".mts": ("video/mp2t", "mpegts"),
    ".m2ts": ("video/mp2t", "mpegts"),
    ".mpg": ("video/mpeg", "mpeg"),
    ".mpeg": ("video/mpeg", "mpeg"),
    ".flv": ("video/x-flv", "flv"),
    ".ogv": ("video/ogg", "ogg"),
    ".wmv": ("video/x-ms-wmv", "asf"),
    ".asf": ("video/x-ms-asf", "asf"),
}
# What a container is served as when its name does not match what the probe found; any other
# demuxer the probe accepts (raw streams) is served as opaque bytes.
_CONTAINER_TYPES = {
    _MP4_FAMILY: "video/mp4",
    _MATROSKA_FAMILY: "video/x-matroska",
    "avi": "video/x-msvideo",
    "mpegts": "video/mp2t",
    "mpeg": "video/mpeg",
    "flv": "video/x-flv",
    "ogg": "video/ogg",
    "asf": "video/x-ms-asf",
}


@dataclass(frozen=True)
class PresignedInput:
    project: Project
    file: File
    upload_url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime | None


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def check_content_type(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if not media.startswith("video/") or media == "video/":
        raise InvalidInput(
            f"content_type must be a video type such as video/mp4; got {content_type!r}"
        )
    return media


def _extension(filename: str) -> str:
    # The extension of the key's last segment, which is what ends up in storage and URLs.
    return os.path.splitext(safe_filename(filename, default=""))[1].lower()


def check_upload_name(filename: str) -> None:
    if _extension(filename) not in UPLOAD_EXTENSIONS:
        allowed = ", ".join(UPLOAD_EXTENSIONS)
        raise InvalidInput(
            f"filename must end in a video extension ({allowed}); got {filename!r}. "
            "Rename the file or export it as MP4."
        )


def verified_content_type(filename: str, container: str | None) -> str:
    """The type a verified upload is stored and served as, from what the probe read."""
    named = UPLOAD_EXTENSIONS.get(_extension(filename))
    if named is not None and named[1] == container:
        return named[0]
    return _CONTAINER_TYPES.get(container or "", OPAQUE_TYPE)


def check_declared_size(size_bytes: int | None, settings: Settings) -> None:
    if size_bytes is None:
        return
    if size_bytes <= 0:
        raise InvalidInput(f"size_bytes must be positive; got {size_bytes}")
    if size_bytes > settings.max_upload_bytes:
        raise TooLarge(
            f"Upload of {size_bytes} bytes exceeds the {settings.max_upload_bytes}-byte "
            f"({_mib(settings.max_upload_bytes)}) launch limit."
        )


def add_file(
    session: Session,
    *,
    project_id: str,
    account_id: str,
    role: FileRole,
    status: FileStatus,
    key: str,
    filename: str,
    content_type: str,
    size_bytes: int | None = None,
    declared_size_bytes: int | None = None,
) -> File:
    """The one constructor of a project's file row, for uploads and render outputs alike."""
    file = File(
        project_id=project_id,
        account_id=account_id,
        role=role,
        status=status,
        storage_key=key,
        filename=filename,
        content_type=content_type,
        size_bytes=size_bytes,
        declared_size_bytes=declared_size_bytes,
    )
    session.add(file)
    session.flush()
    return file


def register_output(
    session: Session,
    job: Job,
    *,
    key: str,
    filename: str,
    size_bytes: int,
    content_type: str = "video/mp4",
) -> File:
    """The project's output-file row for a stored render, `pending`: it becomes ready (listed,
    downloadable, shared) only in the transaction that marks its job done
    (`JobLifecycle.complete`), so a job that ends otherwise never delivers one.

    Refused (NotFound) when the project was deleted while the job rendered: the caller deletes
    the stored bytes. The account row's lock orders this against the deletion, which deletes
    the bytes of every output registered before it (reframe.services.deletion).
    """
    ensure_live_project(session, job.account_id, job.project_id)
    return add_file(
        session,
        project_id=job.project_id,
        account_id=job.account_id,
        role=FileRole.OUTPUT,
        status=FileStatus.PENDING,
        key=key,
        filename=filename,
        content_type=content_type,
        size_bytes=size_bytes,
    )


def check_pending_uploads(session: Session, settings: Settings, account: Account) -> None:
    """Refuse a new upload URL while the account holds `max_pending_uploads` live ones.

    Only URLs that can still be used count: an expired one frees its slot at once, whether or
    not the sweeper has removed its row yet. The account row is locked first (PostgreSQL), so
    concurrent presigns of one account are counted one after the other.
    """
    session.execute(select(Account.id).where(Account.id == account.id).with_for_update())
    now = utcnow()
    live_since = now - timedelta(seconds=settings.upload_url_ttl_sec)
    count, oldest = session.execute(
        select(func.count(File.id), func.min(File.created_at)).where(
            File.account_id == account.id,
            File.role == FileRole.INPUT,
            File.status == FileStatus.PENDING,
            File.created_at > live_since,
        )
    ).one()
    limit = settings.max_pending_uploads
    if count < limit:
        return
    frees_in = settings.upload_url_ttl_sec - (now - oldest).total_seconds() if oldest else 1.0
    raise RateLimited(
        f"{count} uploads of this account are outstanding (presigned but not verified; the "
        f"limit is {limit}). Free one by uploading its file and calling POST "
        "/pricing/estimate-video on its key, or wait until the oldest upload URL expires in "
        f"{max(1, int(frees_in))} s.",
        retry_after=max(1.0, frees_in),
    )


def presign(
    session: Session,
    storage: Storage,
    settings: Settings,
    account: Account,
    *,
    filename: str,
    content_type: str,
    size_bytes: int | None = None,
) -> PresignedInput:
    """Create the project and its pending input-file row, and sign the upload URL."""
    name = filename.strip()
    if not name or len(name) > MAX_FILENAME:
        raise InvalidInput(f"filename must be 1 to {MAX_FILENAME} characters")
    check_upload_name(name)
    media = check_content_type(content_type)
    check_declared_size(size_bytes, settings)
    check_pending_uploads(session, settings, account)

    project = Project(account_id=account.id, name=os.path.splitext(name)[0][:255] or name)
    session.add(project)
    session.flush()
    key = new_object_key(f"uploads/{account.id}/{project.id}", name)
    file = add_file(
        session,
        project_id=project.id,
        account_id=account.id,
        role=FileRole.INPUT,
        status=FileStatus.PENDING,
        key=key,
        filename=name,
        content_type=media,
        declared_size_bytes=size_bytes,
    )
    signed = storage.presign_upload(
        key, media, expires_in=settings.upload_url_ttl_sec, max_bytes=settings.max_upload_bytes
    )
    return PresignedInput(
        project=project,
        file=file,
        upload_url=signed.url,
        method=signed.method,
        headers=dict(signed.headers),
        expires_at=signed.expires_at,
    )


def check_writable(session: Session, key: str) -> None:
    """Refuse bytes for an upload key that is no longer waiting for them (local storage).

    Once verified, an upload is sealed: its priced copy is pinned and its key never read
    again, so a second PUT could only mislead the client (and fill the disk). A rejected
    upload is as final. Keys no upload row names (none are signed for PUT) are left alone.
    """
    row = session.execute(
        select(File.status, File.error, File.error_status).where(File.storage_key == key)
    ).one_or_none()
    status = row.status if row is not None else None
    if row is not None and status is FileStatus.EXPIRED:
        # Swept (410) or deleted with its project (404): bytes sent now would never be deleted.
        message = row.error or "This upload expired and its bytes were deleted."
        raise NotFound(message) if row.error_status == 404 else Gone(message)
    if status is FileStatus.READY:
        raise Conflict(
            "This upload was already verified and priced, and cannot be replaced: presign a "
            "new upload to send another file."
        )
    if status is FileStatus.REJECTED:
        raise Conflict("This upload was rejected and deleted: presign a new upload.")


def probe_limits(settings: Settings) -> ProbeLimits:
    """What probing one upload may cost (REFRAME_PROBE_*)."""
    return ProbeLimits(
        timeout_sec=settings.probe_timeout_sec,
        max_pixels=settings.probe_max_pixels,
        max_frames=settings.probe_max_frames,
        max_bytes_read=settings.probe_max_bytes_read,
    )


def pinned_prefix(file: File) -> str:
    """Where a verified input's immutable copy lives: no URL to write under it is ever signed
    (presign only signs `uploads/...`), so nothing but this service can change it."""
    return f"inputs/{file.account_id}/{file.project_id}/{file.id}"


def _reject(
    session: Session, storage: Storage, file: File, exc: ReframeError, pinned: str | None = None
) -> None:
    storage.delete(file.storage_key)
    if pinned is not None:
        storage.delete(pinned)
    file.status = FileStatus.REJECTED
    file.error = exc.message
    file.error_status = exc.status_code
    file.probe = None
    # The rejection must stick even though the caller's request fails with this error.
    session.commit()


def verify_input(
    session: Session, storage: Storage, settings: Settings, file: File
) -> dict[str, Any]:
    """The probe of the upload, verified once and then final.

    The first call checks the object's real size, copies it to an immutable, content-addressed
    key (`Storage.pin`), probes that copy, and marks the file ready with the pin; the upload
    key is then deleted and never read again, so a later PUT to its URL (local storage refuses
    one; an S3 URL cannot be revoked) changes nothing that was priced. Every later call returns
    the same probe without touching storage: an estimate never re-prices a verified upload.

    Commits: before the slow storage and probe calls (so no transaction is held across them),
    and after, so that what it learned (the pin, or the upload rejected) survives the error
    response that follows a rejection.
    """
    if file.role is not FileRole.INPUT:
        raise InvalidInput(f"file {file.id} is a render output, not an upload")
    if file.status is FileStatus.EXPIRED:
        raise Gone(file.error or f"file {file.id} expired and its bytes were deleted")
    if file.status is FileStatus.REJECTED:
        status = file.error_status or 400
        message = f"This upload was rejected and deleted: {file.error} Presign a new upload."
        raise TooLarge(message) if status == 413 else InvalidMedia(message)
    if file.status is FileStatus.READY and file.pinned_key is not None and file.probe is not None:
        return file.probe

    # Verified before pins existed (migration 0006): pin the version that was probed then, and
    # nothing else; that probe is not taken again.
    legacy = file.status is FileStatus.READY and file.probe is not None
    # Storage calls and probing can be slow; no transaction may stay open across them (on
    # SQLite an open transaction holds the database write lock).
    session.commit()
    info = storage.head(file.storage_key)
    if info is None:
        raise NotFound(
            f"nothing has been uploaded under {file.storage_key!r} yet: PUT the file to the "
            "upload_url from POST /upload/presign first"
        )
    if info.size > settings.max_upload_bytes:
        _reject(
            session,
            storage,
            file,
            TooLarge(
                f"Upload is {info.size} bytes; the launch limit is {settings.max_upload_bytes} "
                f"bytes ({_mib(settings.max_upload_bytes)})."
            ),
        )
        raise TooLarge(file.error or "upload too large")

    probed_bad = False  # the probe itself refused the copy (and rejected the upload)
    try:
        with storage.pin(
            file.storage_key,
            pinned_prefix(file),
            content_type=file.content_type,
            max_bytes=settings.max_upload_bytes,
            expect_version=file.object_version if legacy else None,
        ) as copy:
            pin = copy.pin
            if legacy:
                probe: dict[str, Any] = dict(file.probe or {})
            else:
                try:
                    probe = probe_video(copy.path, probe_limits(settings)).to_dict()
                    pricing.check_duration(float(probe["duration_sec"]), settings)
                except (InvalidMedia, TooLarge) as exc:
                    probed_bad = True
                    _reject(session, storage, file, exc, pinned=pin.key)
                    raise
    except TooLarge as exc:
        if not probed_bad:  # it grew past the limit after the HEAD
            _reject(session, storage, file, exc)
        raise
    except ObjectChanged:
        raise Conflict(
            "This upload was changed after it was verified, so it can no longer be used. "
            "Presign a new upload and send the file again."
        ) from None

    # Two first verifications of one upload can race (an estimate and a job at once): the
    # first to commit wins, under the row lock, and the other's copy is dropped.
    locked = session.get(File, file.id, with_for_update=True, populate_existing=True)
    assert locked is not None
    if locked.status is FileStatus.EXPIRED:
        # Swept, or deleted with its project, while it was being copied: the copy goes too.
        session.commit()
        storage.delete(pin.key)
        message = locked.error or f"file {file.id} expired and its bytes were deleted"
        raise NotFound(message) if locked.error_status == 404 else Gone(message)
    if locked.status is FileStatus.READY and locked.pinned_key is not None and locked.probe:
        session.commit()
        if locked.pinned_key != pin.key:
            storage.delete(pin.key)
        return locked.probe
    locked.size_bytes = pin.size
    locked.pinned_key = pin.key
    locked.content_sha256 = pin.sha256
    locked.object_version = pin.etag
    locked.pinned_version_id = pin.version_id
    locked.probe = probe
    # From here on it is served as what it was found to be, not what the client declared.
    locked.content_type = verified_content_type(locked.filename, probe.get("container"))
    locked.status = FileStatus.READY
    session.commit()
    # The upload key is never read again; what a client PUTs there later is not kept either.
    storage.delete(locked.storage_key)
    return probe


def input_pin(file: File) -> ObjectPin:
    """The pin of a verified input (`verify_input` made it)."""
    if file.pinned_key is None or file.content_sha256 is None or file.size_bytes is None:
        raise InvalidInput(f"upload {file.storage_key!r} has not been verified yet")
    return ObjectPin(
        key=file.pinned_key,
        sha256=file.content_sha256,
        size=file.size_bytes,
        etag=file.object_version,
        version_id=file.pinned_version_id,
    )
