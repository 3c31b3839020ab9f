"""Object storage: the `Storage` contract and its two backends (local disk and S3-compatible).

`build_storage(settings)` is the only place that picks a backend; nothing here touches the disk
or the network at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reframe.storage.base import (
    ObjectInfo,
    PresignedUpload,
    Storage,
    new_object_key,
    safe_filename,
    validate_key,
)

if TYPE_CHECKING:
    from reframe.config import Settings

__all__ = [
    "ObjectInfo",
    "PresignedUpload",
    "Storage",
    "build_storage",
    "new_object_key",
    "safe_filename",
    "validate_key",
]


def build_storage(settings: Settings) -> Storage:
    """The backend named by `settings.storage_backend`, configured from the same settings."""
    if settings.storage_backend == "s3":
        from reframe.storage.s3 import S3Storage

        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    from reframe.storage.local import LocalStorage

    return LocalStorage(
        root=settings.resolved_storage_dir,
        public_base_url=settings.public_base_url,
        secret=settings.secret_key,
    )
