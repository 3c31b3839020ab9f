"""Local-disk storage: objects are files under one folder, moved in and out through URLs that the
app itself serves (`reframe.api.routes.storage`) and that are signed with HMAC-SHA256.

A signed URL looks like `{public_base_url}/storage/{key}?expires=...&sig=...` (plus `max_bytes`
and `content_type` for uploads; `content_type`, `filename`, `inline` and `bound_to` for
downloads). The signature covers the method, the key, the expiry and every other parameter, so
none of them can be changed by the holder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import mimetypes
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from types import TracebackType
from typing import IO
from urllib.parse import quote, urlencode

from reframe.errors import Conflict, Forbidden, InvalidInput, NotFound, ObjectChanged, TooLarge
from reframe.storage.base import (
    ObjectInfo,
    ObjectPin,
    PinnedCopy,
    PresignedUpload,
    check_pinned,
    pinned_copy_key,
    served_content_type,
    validate_key,
)

# Domain separation: the service's one secret also signs other things (share tokens, sessions);
# a storage signature must never be valid anywhere else, and vice versa.
_SIGNING_CONTEXT = b"reframe/storage-url/v1"


@dataclass(frozen=True)
class SignedGrant:
    """What a verified URL allows: one method on one key until `expires`."""

    method: str
    key: str
    expires: int
    max_bytes: int | None = None
    # PUT: the Content-Type the upload must send. GET: the type the response is served as.
    content_type: str | None = None
    filename: str | None = None
    inline: bool = False  # GET: shown in place (a player's source) instead of downloaded
    # GET: a grant the app re-checks on every request (a share link's id), so revoking it
    # stops the URL before it expires.
    bound_to: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


class LocalStorage:
    """Files under `root`; signed URLs under `{public_base_url}/storage/`."""

    def __init__(
        self,
        root: Path,
        public_base_url: str,
        secret: str | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`secret` signs URLs. Render actors move bytes but never sign, so they get None and
        the service's secret never travels to them."""
        if secret is not None and not secret:
            raise ValueError("LocalStorage needs a non-empty signing secret")
        self.root = Path(root).resolve()
        self.public_base_url = public_base_url.rstrip("/")
        self._mac_key = (
            hmac.new(secret.encode("utf-8"), _SIGNING_CONTEXT, hashlib.sha256).digest()
            if secret is not None
            else None
        )
        self._clock = clock

    # -- paths --------------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file that holds `key`. Raises InvalidInput for keys that could leave `root`."""
        validate_key(key)
        path = (self.root / key).resolve()
        # validate_key already forbids "..", but a symlink planted inside root must not lead out.
        if not path.is_relative_to(self.root):
            raise InvalidInput(f"storage key {key!r} resolves outside the storage folder")
        return path

    # -- signing ------------------------------------------------------------------------------

    def _signature(self, grant: SignedGrant) -> str:
        if self._mac_key is None:
            raise RuntimeError("this storage client has no signing secret; it cannot sign URLs")
        fields = [
            grant.method,
            grant.key,
            str(grant.expires),
            "" if grant.max_bytes is None else str(grant.max_bytes),
            grant.content_type or "",
            grant.filename or "",
            "inline" if grant.inline else "",
            grant.bound_to or "",
        ]
        # "\n" cannot occur in a valid key, a number or a media type, and filenames and
        # bindings are checked for it below, so distinct grants never serialise alike.
        message = "\n".join(fields).encode("utf-8")
        return _b64(hmac.new(self._mac_key, message, hashlib.sha256).digest())

    def _url(self, grant: SignedGrant) -> str:
        query: dict[str, str] = {"expires": str(grant.expires)}
        if grant.max_bytes is not None:
            query["max_bytes"] = str(grant.max_bytes)
        if grant.content_type is not None:
            query["content_type"] = grant.content_type
        if grant.filename is not None:
            query["filename"] = grant.filename
        if grant.inline:
            query["inline"] = "1"
        if grant.bound_to is not None:
            query["bound_to"] = grant.bound_to
        query["sig"] = self._signature(grant)
        return f"{self.public_base_url}/storage/{quote(grant.key, safe='/')}?{urlencode(query)}"

    def _expiry(self, expires_in: int) -> int:
        if expires_in <= 0:
            raise ValueError("expires_in must be a positive number of seconds")
        return int(self._clock()) + int(expires_in)

    def presign_upload(
        self, key: str, content_type: str, expires_in: int, max_bytes: int
    ) -> PresignedUpload:
        validate_key(key)
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not content_type or "\n" in content_type:
            raise InvalidInput("content_type must be a single-line media type such as video/mp4")
        grant = SignedGrant(
            method="PUT",
            key=key,
            expires=self._expiry(expires_in),
            max_bytes=max_bytes,
            content_type=content_type,
        )
        return PresignedUpload(
            url=self._url(grant),
            method="PUT",
            headers={"Content-Type": content_type},
            expires_at=datetime.fromtimestamp(grant.expires, tz=UTC),
        )

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
        validate_key(key)
        for value in (filename, bound_to):
            if value is not None and ("\n" in value or "\r" in value):
                raise InvalidInput("download filename and binding must not contain line breaks")
        grant = SignedGrant(
            method="GET",
            key=key,
            expires=self._expiry(expires_in),
            content_type=None if content_type is None else served_content_type(content_type, key),
            filename=filename,
            inline=inline,
            bound_to=bound_to,
        )
        return self._url(grant)

    def verify(self, method: str, key: str, query: Mapping[str, str]) -> SignedGrant:
        """Check a request against its URL's signature; raise Forbidden (403) when it fails.

        `method` is the HTTP method that arrived (HEAD is checked as GET).
        """
        validate_key(key)
        sig = query.get("sig")
        expires_raw = query.get("expires")
        if not sig or not expires_raw:
            raise Forbidden(
                "this storage URL is not signed; ask the API for a fresh upload or download URL"
            )
        try:
            expires = int(expires_raw)
            max_bytes = int(query["max_bytes"]) if "max_bytes" in query else None
        except ValueError:
            raise Forbidden("this storage URL is malformed; ask the API for a fresh one") from None
        signed_method = "GET" if method.upper() == "HEAD" else method.upper()
        grant = SignedGrant(
            method=signed_method,
            key=key,
            expires=expires,
            max_bytes=max_bytes,
            content_type=query.get("content_type"),
            filename=query.get("filename"),
            inline=query.get("inline") == "1",
            bound_to=query.get("bound_to"),
        )
        if not hmac.compare_digest(self._signature(grant).encode(), sig.encode()):
            raise Forbidden(
                f"the signature does not match this {signed_method} request: the URL was altered "
                "or is meant for another method; ask the API for a fresh URL"
            )
        if self._clock() > expires:
            raise Forbidden("this storage URL has expired; ask the API for a fresh one")
        return grant

    # -- objects ------------------------------------------------------------------------------

    def open_upload(self, key: str, max_bytes: int | None = None) -> PartialUpload:
        """A temporary file next to `key`'s final place, renamed onto it by `commit()`."""
        dest = self.path_for(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"storage key {key!r} runs through an existing object") from None
        if dest.is_dir():
            raise Conflict(f"storage key {key!r} names a folder of other objects")
        return PartialUpload(dest, max_bytes)

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_for(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            content_type=mimetypes.guess_type(path.name)[0],
            version=_version(stat),
        )

    @contextmanager
    def pin(
        self,
        key: str,
        dest_prefix: str,
        *,
        content_type: str,
        max_bytes: int,
        expect_version: str | None = None,
    ) -> Iterator[PinnedCopy]:
        src = self.path_for(key)
        # One open file is one version: a PUT that lands meanwhile renames a new file over the
        # name and leaves the one being read intact.
        try:
            handle = open(src, "rb")  # noqa: SIM115 - closed below
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"storage object {key!r} does not exist") from None
        with handle:
            stat = os.fstat(handle.fileno())
            if not S_ISREG(stat.st_mode):
                raise NotFound(f"storage object {key!r} does not exist")
            if expect_version is not None and _version(stat) != expect_version:
                raise ObjectChanged(f"storage object {key!r} changed since it was verified")
            staging = self.path_for(validate_key(f"{dest_prefix.strip('/')}/incoming"))
            staging.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with PartialUpload(staging, max_bytes) as upload:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
                    upload.write(chunk)
                sha256 = digest.hexdigest()
                dest_key = pinned_copy_key(dest_prefix, sha256, key)
                upload.dest = self.path_for(dest_key)
                upload.dest.parent.mkdir(parents=True, exist_ok=True)
                size = upload.commit()
        yield PinnedCopy(ObjectPin(key=dest_key, sha256=sha256, size=size), upload.dest)

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        path.unlink(missing_ok=True)
        # Keys carry a per-upload folder; drop the ones left empty so the tree does not grow
        # one empty directory per deleted upload.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        with self.open_upload(key) as upload, open(path, "rb") as src:
            while chunk := src.read(1024 * 1024):
                upload.write(chunk)
            upload.commit()

    def download_file(self, key: str, dest: Path) -> None:
        src = self.path_for(key)
        if not src.is_file():
            raise NotFound(f"storage object {key!r} does not exist")
        shutil.copyfile(src, dest)

    @contextmanager
    def local_path(self, key: str, *, pin: ObjectPin | None = None) -> Iterator[Path]:
        path = self.path_for(key)
        if not path.is_file():
            raise NotFound(f"storage object {key!r} does not exist")
        if pin is not None:
            # The file is used in place, so it is hashed first. Only the server writes pinned
            # keys and never rewrites one: this catches damage or a mistaken rewrite, not a
            # writer racing the reader.
            digest = hashlib.sha256()
            size = 0
            with open(path, "rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
            check_pinned(pin, digest.hexdigest(), size)
        yield path

    def sweep_incomplete(self, older_than: datetime) -> int:
        """Delete `.part` files last written before `older_than`: uploads whose connection
        died (a killed process skips PartialUpload's cleanup). A live upload writes its file
        continuously, so its mtime stays recent."""
        cutoff = older_than.timestamp()
        removed = 0
        for folder, _dirs, names in os.walk(self.root):
            for name in names:
                if not (name.startswith(".") and name.endswith(".part")):
                    continue
                path = Path(folder) / name
                try:
                    if path.lstat().st_mtime >= cutoff:
                        continue
                    path.unlink()
                except FileNotFoundError:  # another sweeper, or the upload itself, was first
                    continue
                removed += 1
        return removed


def _version(stat: os.stat_result) -> str:
    # Uploads land by rename, so a rewrite always brings a new inode and mtime.
    return f"{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ino}"


class PartialUpload:
    """An upload in progress: bytes go to a hidden `.part` file in the destination's folder
    (same filesystem, so the final rename is atomic); it is removed unless committed."""

    def __init__(self, dest: Path, max_bytes: int | None) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.written = 0
        self.temp = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}.part")
        self.file: IO[bytes] = open(self.temp, "xb")  # noqa: SIM115 - closed by commit/abort
        self._done = False

    def write(self, chunk: bytes) -> None:
        if self.max_bytes is not None and self.written + len(chunk) > self.max_bytes:
            self.abort()
            raise TooLarge(
                f"upload exceeds the {self.max_bytes}-byte limit of this upload URL; "
                "upload a smaller file"
            )
        self.file.write(chunk)
        self.written += len(chunk)

    def commit(self) -> int:
        """Make the object visible under its key; returns its size in bytes."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temp, self.dest)
        self._done = True
        return self.written

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self.file.close()
        self.temp.unlink(missing_ok=True)

    def __enter__(self) -> PartialUpload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()
