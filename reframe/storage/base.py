"""The storage contract every backend implements. Keys are chosen by the server, never clients."""

from __future__ import annotations

import hmac
import mimetypes
import re
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from reframe.errors import InvalidInput, ObjectChanged


@dataclass(frozen=True)
class PresignedUpload:
    """What a client needs to PUT bytes straight to storage."""

    url: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None
    # Changes whenever the object is written again (S3's ETag; size, mtime and inode on disk).
    version: str | None = None


@dataclass(frozen=True)
class ObjectPin:
    """One exact stored object: the bytes a job was priced on, and how to ask for them again.

    `sha256` and `size` are what every read is checked against. `etag` and `version_id` (S3;
    None on disk) let the store itself refuse another object before sending a byte; they are
    not what the guarantee rests on, because an ETag is an MD5 of the bytes: whoever holds the
    original can upload it again (or a crafted collision) and get the same ETag back.
    """

    key: str
    sha256: str
    size: int
    etag: str | None = None
    version_id: str | None = None


@dataclass(frozen=True)
class PinnedCopy:
    """A pin just taken, and a local file holding exactly its bytes (for probing them)."""

    pin: ObjectPin
    path: Path


class Storage(Protocol):
    """Object storage. Implementations: LocalStorage (disk + app-served signed URLs), S3Storage."""

    def presign_upload(
        self, key: str, content_type: str, expires_in: int, max_bytes: int
    ) -> PresignedUpload: ...

    def presign_download(
        self,
        key: str,
        expires_in: int,
        filename: str | None = None,
        *,
        content_type: str | None = None,
        inline: bool = False,
        bound_to: str | None = None,
    ) -> str:
        """A GET URL that serves `key` as `served_content_type(content_type, key)`.

        The response is `attachment` (a download named `filename`, else the key's last
        segment) unless `inline` (a player's source). `bound_to` names a grant the app
        re-checks on every request (a share link); a backend whose URLs do not pass through
        the app cannot, and such URLs live only their `expires_in`.
        """
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def delete(self, key: str) -> None: ...

    def upload_file(self, path: Path, key: str, content_type: str) -> None: ...

    def download_file(self, key: str, dest: Path) -> None: ...

    def local_path(self, key: str, *, pin: ObjectPin | None = None) -> AbstractContextManager[Path]:
        """A readable local file for `key` for the duration of the block (S3 downloads a copy).

        With `pin`, the file holds exactly the pinned object or ObjectChanged is raised: its
        SHA-256 and size are checked (and S3 is asked for that ETag/version).
        """
        ...

    def pin(
        self,
        key: str,
        dest_prefix: str,
        *,
        content_type: str,
        max_bytes: int,
        expect_version: str | None = None,
    ) -> AbstractContextManager[PinnedCopy]:
        """Copy what `key` holds now to `dest_prefix/<sha256>/<name>`, a key nobody is given a
        URL to write, and pin the copy.

        The copy is made from one read of `key`, hashed while it is read, and the bytes stored
        are the bytes hashed (never a server-side copy of a key a client may still write). The
        block gets a local file of those same bytes. Raises NotFound (nothing under `key`),
        TooLarge (more than `max_bytes`; nothing is left behind) and ObjectChanged (the object
        is not `expect_version`, an `ObjectInfo.version`).
        """
        ...

    def sweep_incomplete(self, older_than: datetime) -> int:
        """Remove uploads that never completed and were started before `older_than` (local
        `.part` files, S3 multipart uploads); returns how many. Safe to run concurrently."""
        ...


def pinned_copy_key(dest_prefix: str, sha256: str, key: str) -> str:
    """Where `pin` stores a copy: content-addressed under the caller's prefix."""
    return validate_key(f"{dest_prefix.strip('/')}/{sha256}/{key.rsplit('/', 1)[-1]}")


def check_pinned(pin: ObjectPin, sha256: str, size: int) -> None:
    """Raise ObjectChanged unless (sha256, size) are the pinned object's."""
    if size != pin.size or not hmac.compare_digest(sha256, pin.sha256):
        raise ObjectChanged(
            f"storage object {pin.key!r} is not the object that was pinned: it holds {size} "
            f"bytes with SHA-256 {sha256[:16]}..., the pin says {pin.size} bytes with "
            f"{pin.sha256[:16]}..."
        )


# Keys are server-chosen, but they still reach the disk (local backend) and URLs, so both backends
# accept only a conservative alphabet. A leading dot is refused per segment so that nothing can
# name the local backend's in-progress ".part" files or walk upwards with "..".
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
MAX_KEY_LENGTH = 512


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe object key, else raise InvalidInput."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"storage key must be 1 to {MAX_KEY_LENGTH} characters long")
    for segment in key.split("/"):
        if not _KEY_SEGMENT.fullmatch(segment):
            raise InvalidInput(
                f"storage key {key!r} is not allowed: use '/'-separated segments of letters, "
                "digits, '.', '_' and '-' that do not start with '.' or '-'"
            )
    return key


# Uploads are served back only as what they were verified to be: a video, or opaque bytes.
# A type derived from the key's extension (".html", ".svg") made an upload a page on the
# serving origin; nothing else a browser would render as a document is ever sent.
OPAQUE_TYPE = "application/octet-stream"
_VIDEO_TYPE = re.compile(r"video/[a-z0-9][a-z0-9.+-]{0,62}")


def served_content_type(content_type: str | None, key: str) -> str:
    """The Content-Type a stored object is served with: a plain video type, else opaque."""
    if content_type is None:
        guessed = mimetypes.guess_type(key.rsplit("/", 1)[-1])[0]
        content_type = guessed or OPAQUE_TYPE
    media = content_type.split(";", 1)[0].strip().lower()
    return media if _VIDEO_TYPE.fullmatch(media) else OPAQUE_TYPE


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """`attachment` (or `inline`) with an ASCII fallback name and the exact one per RFC 5987."""
    fallback = safe_filename(filename, default="download")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def safe_filename(filename: str, default: str = "video") -> str:
    """A client-supplied file name reduced to something usable as the last segment of a key."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._-")[:120]
    return cleaned or default


def new_object_key(prefix: str, filename: str) -> str:
    """A fresh, unguessable key `prefix/<32 hex>/<safe filename>`; unique per call."""
    return validate_key(f"{prefix.strip('/')}/{uuid.uuid4().hex}/{safe_filename(filename)}")
