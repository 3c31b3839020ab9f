"""S3-compatible storage through boto3: AWS S3, Cloudflare R2 and MinIO.

Limits are never delegated to S3. A presigned PUT binds the key, the expiry and the
Content-Type, but it cannot cap the size of what is uploaded (only a POST policy can, and not
every S3-compatible server enforces one). Callers must therefore `head()` an uploaded object and
check its real size, and probe it for its duration, before trusting it; `delete()` it when it
is over a limit.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from reframe.errors import NotFound, ObjectChanged, ReframeError, TooLarge
from reframe.storage.base import (
    ObjectInfo,
    ObjectPin,
    PinnedCopy,
    PresignedUpload,
    check_pinned,
    content_disposition,
    pinned_copy_key,
    safe_filename,
    served_content_type,
    validate_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StorageUnavailable(ReframeError):
    """The object store refused or failed a request that should have worked (500)."""


class S3Storage:
    """Objects in one bucket. `endpoint_url` selects R2/MinIO/a loopback server; None is AWS."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.region = region
        # Custom endpoints (MinIO, R2, moto) rarely have wildcard DNS for virtual-hosted
        # buckets, so path-style addressing is the one that works everywhere but AWS.
        addressing: Literal["path", "auto"] = "path" if endpoint_url else "auto"
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": addressing},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    @property
    def client(self) -> S3Client:
        return self._client

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (development and tests; production pre-creates)."""
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        # us-east-1 rejects an explicit LocationConstraint, and R2's "auto" is not a location.
        if self.region in {"us-east-1", "auto"}:
            self._client.create_bucket(Bucket=self.bucket)
        else:
            self._client.create_bucket(
                Bucket=self.bucket,
                CreateBucketConfiguration={"LocationConstraint": self.region},  # type: ignore[typeddict-item]
            )

    def presign_upload(
        self, key: str, content_type: str, expires_in: int, max_bytes: int
    ) -> PresignedUpload:
        # max_bytes is accepted for the common contract but S3 cannot enforce it on a PUT;
        # see the module docstring: the caller HEADs the object afterwards.
        validate_key(key)
        url = self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires_in,
            HttpMethod="PUT",
        )
        return PresignedUpload(
            url=url,
            method="PUT",
            headers={"Content-Type": content_type},
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
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
        # `bound_to` cannot be honoured: S3 serves the URL without asking us, so a revocable
        # grant (a share link) relies on a short `expires_in`.
        validate_key(key)
        # The response headers are part of the signed URL, so S3 serves the type we verified
        # and a Content-Disposition, whatever Content-Type the uploader's PUT stored.
        params: dict[str, str] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": served_content_type(content_type, key),
            "ResponseContentDisposition": content_disposition(
                filename or key.rsplit("/", 1)[-1], inline=inline
            ),
        }
        return self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_in, HttpMethod="GET"
        )

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            meta = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StorageUnavailable(
                f"object storage refused HEAD {key!r}: {_error_code(exc)}"
            ) from exc
        return ObjectInfo(
            key=key,
            size=int(meta["ContentLength"]),
            content_type=meta.get("ContentType"),
            version=meta.get("ETag"),
        )

    def delete(self, key: str) -> None:
        validate_key(key)
        self._client.delete_object(Bucket=self.bucket, Key=key)

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        validate_key(key)
        self._client.upload_file(
            str(path), self.bucket, key, ExtraArgs={"ContentType": content_type}
        )

    def download_file(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            self._client.download_file(self.bucket, key, str(dest))
        except ClientError as exc:
            if _error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                raise NotFound(f"storage object {key!r} does not exist") from exc
            raise StorageUnavailable(
                f"object storage refused GET {key!r}: {_error_code(exc)}"
            ) from exc

    def sweep_incomplete(self, older_than: datetime) -> int:
        """Abort multipart uploads initiated before `older_than`: their parts are stored (and
        billed) but invisible until completed, which an abandoned client never does."""
        from botocore.exceptions import ClientError

        aborted = 0
        pages = self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"] >= older_than:
                    continue
                try:
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                except ClientError as exc:
                    if _error_code(exc) != "NoSuchUpload":  # another sweeper was first
                        raise
                    continue
                aborted += 1
        return aborted

    @contextmanager
    def local_path(self, key: str, *, pin: ObjectPin | None = None) -> Iterator[Path]:
        """Download `key` to a private temporary folder, removed when the block ends.

        With `pin`: one GET that names the pinned version (VersionId where the bucket keeps
        versions, and If-Match on the ETag), so S3 refuses other bytes outright, and the
        SHA-256 of what arrived is checked, which is what actually holds: an ETag is an MD5
        that re-uploading the original bytes (or a collision) reproduces. Never a HEAD
        followed by a GET, between which the object could change.
        """
        validate_key(key)
        with tempfile.TemporaryDirectory(prefix="reframe-s3-") as tmp:
            dest = Path(tmp) / safe_filename(key.rsplit("/", 1)[-1])
            if pin is None:
                self.download_file(key, dest)
            else:
                sha256, size = self._get_to_file(
                    key, dest, if_match=pin.etag, version_id=pin.version_id
                )
                check_pinned(pin, sha256, size)
            yield dest

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
        # The presigned PUT URL of `key` cannot be revoked, so `key` is read once (one GET,
        # the ETag it had checked by S3 when one is expected), hashed as it arrives, and those
        # very bytes are uploaded to a key no URL is ever signed for. A server-side CopyObject
        # would copy whatever `key` holds at that moment; If-Match on it would only compare
        # MD5s.
        validate_key(key)
        with tempfile.TemporaryDirectory(prefix="reframe-s3-pin-") as tmp:
            local = Path(tmp) / safe_filename(key.rsplit("/", 1)[-1])
            sha256, size = self._get_to_file(
                key, local, if_match=expect_version, max_bytes=max_bytes
            )
            dest_key = pinned_copy_key(dest_prefix, sha256, key)
            with open(local, "rb") as body:
                put = self._client.put_object(
                    Bucket=self.bucket, Key=dest_key, Body=body, ContentType=content_type
                )
            pin = ObjectPin(
                key=dest_key,
                sha256=sha256,
                size=size,
                etag=put.get("ETag"),
                version_id=put.get("VersionId"),
            )
            yield PinnedCopy(pin, local)

    def _get_to_file(
        self,
        key: str,
        dest: Path,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[str, int]:
        """One GET of `key` into `dest`; returns (sha256, size) of the bytes received."""
        from botocore.exceptions import ClientError

        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if if_match is not None:
            params["IfMatch"] = if_match
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            response = self._client.get_object(**params)  # type: ignore[arg-type]
        except ClientError as exc:
            code = _error_code(exc)
            if code in {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}:
                raise NotFound(f"storage object {key!r} does not exist") from exc
            if code in {"412", "PreconditionFailed"}:
                raise ObjectChanged(
                    f"storage object {key!r} is no longer the version that was pinned"
                ) from exc
            raise StorageUnavailable(f"object storage refused GET {key!r}: {code}") from exc
        digest = hashlib.sha256()
        size = 0
        body = response["Body"]
        try:
            with open(dest, "wb") as out:
                for chunk in body.iter_chunks(1024 * 1024):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(
                            f"storage object {key!r} is larger than the {max_bytes}-byte limit"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        finally:
            body.close()
        return digest.hexdigest(), size


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
