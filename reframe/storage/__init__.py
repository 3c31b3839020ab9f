"""Object storage: the `Storage` contract and its two backends (local disk and S3-compatible).

`build_storage(settings)` is the only place that picks a backend; nothing here touches the disk
or the network at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from reframe.storage.base import (
    ObjectInfo,
    ObjectPin,
    PresignedUpload,
    Storage,
    new_object_key,
    safe_filename,
    validate_key,
)
from reframe.storage.local import LocalStorage

if TYPE_CHECKING:
    from reframe.config import Settings

__all__ = [
    "ObjectInfo",
    "ObjectPin",
    "PresignedUpload",
    "Storage",
    "StorageConfig",
    "build_storage",
    "new_object_key",
    "safe_filename",
    "validate_key",
]


@dataclass(frozen=True)
class StorageConfig:
    """Where the bytes live, and nothing secret: what a render actor on another node is sent.

    `build()` makes a client that moves bytes but cannot sign URLs. S3 credentials are read
    where the client is built, from that node's REFRAME_S3_ACCESS_KEY_ID and
    REFRAME_S3_SECRET_ACCESS_KEY (else boto3's own chain: instance role, AWS_* variables), so
    they never travel through Ray's object store or task metadata.
    """

    backend: Literal["local", "s3"]
    root: Path
    public_base_url: str
    bucket: str
    endpoint_url: str | None
    region: str

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageConfig:
        return cls(
            backend=settings.storage_backend,
            root=settings.resolved_storage_dir,
            public_base_url=settings.public_base_url,
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )

    def build(
        self,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        secret: str | None = None,
    ) -> Storage:
        """A client for these bytes. S3 keys default to this node's REFRAME_S3_* variables;
        `secret` (the URL signing key) only the service itself passes (`build_storage`)."""
        if self.backend == "s3":
            # boto3 takes a third of a second to import: only an S3 deployment pays for it.
            from reframe.storage.s3 import S3Storage

            return S3Storage(
                bucket=self.bucket,
                endpoint_url=self.endpoint_url,
                region=self.region,
                access_key_id=access_key_id or os.environ.get("REFRAME_S3_ACCESS_KEY_ID"),
                secret_access_key=(
                    secret_access_key or os.environ.get("REFRAME_S3_SECRET_ACCESS_KEY")
                ),
            )
        return LocalStorage(root=self.root, public_base_url=self.public_base_url, secret=secret)


def build_storage(settings: Settings) -> Storage:
    """The backend named by `settings.storage_backend`, configured from the same settings."""
    return StorageConfig.from_settings(settings).build(
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        secret=settings.secret_key,
    )
