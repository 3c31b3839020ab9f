"""What a download URL serves: the type the app chose, never one from the key or the uploader.

Both backends are asked for the same thing: an object that a client stored as HTML under a
`.html` key is served as the video type the app passes (or as opaque bytes), with a
Content-Disposition; the local backend, which serves on the API's origin, also sends
`nosniff` and a sandbox CSP. S3 serves from its own host and takes the type and disposition
from the signed URL's response-* parameters.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from reframe.storage.base import served_content_type
from reframe.storage.local import LocalStorage
from reframe.storage.s3 import S3Storage

HTML = b"<!doctype html><script>alert(document.domain)</script>"
KEY = "uploads/a/b/evil.html"


def _local_get(client: TestClient, url: str) -> httpx.Response:
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}")


@pytest.mark.parametrize(
    ("given", "served"),
    [
        ("video/mp4", "video/mp4"),
        ("Video/WebM; codecs=vp9", "video/webm"),
        ("text/html", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("video/<script>", "application/octet-stream"),
        (None, "application/octet-stream"),  # guessed from evil.html: not a video
    ],
)
def test_served_type_is_a_plain_video_type_or_opaque(given: str | None, served: str) -> None:
    assert served_content_type(given, KEY) == served
    assert served_content_type(None, "outputs/x/clip.mp4") == "video/mp4"


def test_local_get_is_inert_whatever_was_stored(
    local_storage: LocalStorage, storage_client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "page").write_bytes(HTML)
    local_storage.upload_file(tmp_path / "page", KEY, "text/html")

    download = _local_get(storage_client, local_storage.presign_download(KEY, 60))
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith('attachment; filename="evil.html"')
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-security-policy"] == "sandbox"

    player = _local_get(
        storage_client,
        local_storage.presign_download(KEY, 60, content_type="video/mp4", inline=True),
    )
    assert player.headers["content-type"] == "video/mp4"
    assert player.headers["content-disposition"].startswith("inline;")
    assert player.headers["x-content-type-options"] == "nosniff"
    assert player.headers["content-security-policy"] == "sandbox"


def test_local_url_cannot_be_switched_to_inline_or_another_type(
    local_storage: LocalStorage, storage_client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "page").write_bytes(HTML)
    local_storage.upload_file(tmp_path / "page", KEY, "text/html")
    url = local_storage.presign_download(KEY, 60, content_type="video/mp4")
    for extra in ("&inline=1", "&content_type=text%2Fhtml", "&bound_to=x"):
        assert _local_get(storage_client, url + extra).status_code == 403, extra


@pytest.mark.s3
def test_s3_get_takes_type_and_disposition_from_the_signed_url(s3_storage: S3Storage) -> None:
    # The uploader chose text/html for the stored object (its PUT's Content-Type).
    s3_storage.client.put_object(
        Bucket=s3_storage.bucket, Key=KEY, Body=HTML, ContentType="text/html"
    )
    raw = httpx.get(
        s3_storage.client.generate_presigned_url(
            "get_object", Params={"Bucket": s3_storage.bucket, "Key": KEY}
        )
    )
    assert raw.headers["content-type"] == "text/html"  # what S3 alone would do

    download = httpx.get(s3_storage.presign_download(KEY, 60, content_type="video/mp4"))
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert download.headers["content-disposition"].startswith('attachment; filename="evil.html"')

    opaque = httpx.get(s3_storage.presign_download(KEY, 60, filename="clip.mp4"))
    assert opaque.headers["content-type"] == "application/octet-stream"
    assert opaque.headers["content-disposition"].startswith('attachment; filename="clip.mp4"')

    player = httpx.get(s3_storage.presign_download(KEY, 60, content_type="video/mp4", inline=True))
    assert player.headers["content-type"] == "video/mp4"
    assert player.headers["content-disposition"].startswith("inline;")
