"""The storage contract every backend implements. Keys are chosen by the server, never clients."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol


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


class Storage(Protocol):
    """Object storage. Implementations: LocalStorage (disk + app-served signed URLs), S3Storage."""

    def presign_upload(
        self, key: str, content_type: str, expires_in: int, max_bytes: int
    ) -> PresignedUpload: ...

    def presign_download(self, key: str, expires_in: int, filename: str | None = None) -> str: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def delete(self, key: str) -> None: ...

    def upload_file(self, path: Path, key: str, content_type: str) -> None: ...

    def download_file(self, key: str, dest: Path) -> None: ...

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """A readable local file for `key` for the duration of the block (S3 downloads a copy)."""
        ...
