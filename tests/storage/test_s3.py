"""The S3 backend against a real S3 HTTP server on loopback (moto server mode).

moto accepts expired and tampered presigned URLs and ignores size limits, so signature and
expiry checks are covered by the local backend's tests; here the URLs are proven to be usable
by an ordinary HTTP client, and the object operations to work over the wire.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from reframe.config import Settings
from reframe.errors import InvalidInput, NotFound
from reframe.storage import build_storage, new_object_key
from reframe.storage.s3 import S3Storage, content_disposition

pytestmark = pytest.mark.s3

MP4 = "video/mp4"


def test_presigned_put_and_get_round_trip(s3_storage: S3Storage, s3_endpoint: str) -> None:
    key = new_object_key("uploads/acct1", "clip.mp4")
    payload = os.urandom(150_000)
    up = s3_storage.presign_upload(key, MP4, expires_in=300, max_bytes=1_000_000)
    assert up.method == "PUT"
    assert up.headers == {"Content-Type": MP4}
    assert up.url.startswith(f"{s3_endpoint}/{s3_storage.bucket}/{key}?")  # path-style
    assert "X-Amz-Signature=" in up.url
    assert up.expires_at is not None

    resp = httpx.put(up.url, content=payload, headers=up.headers)
    assert resp.status_code == 200, resp.text

    info = s3_storage.head(key)
    assert info is not None
    assert (info.key, info.size, info.content_type) == (key, len(payload), MP4)

    url = s3_storage.presign_download(key, expires_in=300, filename="Clip é.mp4")
    got = httpx.get(url)
    assert got.status_code == 200
    assert got.content == payload
    disposition = got.headers["content-disposition"]
    assert disposition == content_disposition("Clip é.mp4")
    assert "filename*=UTF-8''Clip%20%C3%A9.mp4" in disposition

    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.content == payload[10:20]


def test_file_operations(s3_storage: S3Storage, tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(b"some video bytes")
    s3_storage.upload_file(src, "outputs/p1/out.mp4", MP4)
    info = s3_storage.head("outputs/p1/out.mp4")
    assert info is not None
    assert (info.size, info.content_type) == (16, MP4)

    dest = tmp_path / "back.mp4"
    s3_storage.download_file("outputs/p1/out.mp4", dest)
    assert dest.read_bytes() == b"some video bytes"

    with s3_storage.local_path("outputs/p1/out.mp4") as path:
        assert path.read_bytes() == b"some video bytes"
        kept = path
    assert not kept.exists(), "the temporary copy is removed after the block"

    s3_storage.delete("outputs/p1/out.mp4")
    assert s3_storage.head("outputs/p1/out.mp4") is None
    s3_storage.delete("outputs/p1/out.mp4")  # deleting a missing key is not an error
    with pytest.raises(NotFound):
        s3_storage.download_file("outputs/p1/out.mp4", dest)
    with pytest.raises(NotFound), s3_storage.local_path("outputs/p1/out.mp4"):
        pass


def test_unsafe_keys_are_rejected(s3_storage: S3Storage) -> None:
    with pytest.raises(InvalidInput):
        s3_storage.presign_upload("../x", MP4, expires_in=60, max_bytes=1)
    with pytest.raises(InvalidInput):
        s3_storage.head("a//b")


def test_presigned_put_does_not_cap_the_size(s3_storage: S3Storage) -> None:
    """Why callers must HEAD uploads: the URL's max_bytes is not (and cannot be) enforced."""
    up = s3_storage.presign_upload("uploads/x/big.mp4", MP4, expires_in=60, max_bytes=10)
    resp = httpx.put(up.url, content=b"\0" * 1000, headers=up.headers)
    assert resp.status_code == 200
    info = s3_storage.head("uploads/x/big.mp4")
    assert info is not None
    assert info.size == 1000


def test_ensure_bucket_is_idempotent(s3_endpoint: str, s3_bucket: str) -> None:
    storage = S3Storage(s3_bucket, s3_endpoint, "eu-west-1", "k", "s")
    storage.ensure_bucket()
    storage.ensure_bucket()
    location = storage.client.get_bucket_location(Bucket=s3_bucket)
    assert location["LocationConstraint"] == "eu-west-1"


def test_build_storage_picks_s3(s3_settings: Settings) -> None:
    storage = build_storage(s3_settings)
    assert isinstance(storage, S3Storage)
    storage.ensure_bucket()
    assert storage.head("nothing/here.mp4") is None


def test_presigned_put_binds_the_content_type(s3_storage: S3Storage) -> None:
    up = s3_storage.presign_upload("uploads/x/a.mp4", MP4, expires_in=60, max_bytes=10)
    query = parse_qs(urlsplit(up.url).query)
    assert "content-type" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Expires"] == ["60"]


def test_r2_style_region_auto(s3_endpoint: str, s3_bucket: str) -> None:
    """Cloudflare R2 signs with region "auto" against an account endpoint URL."""
    # moto, like AWS, wants a location constraint outside us-east-1 while R2 takes none, so
    # the bucket is made the AWS way first, as an operator would pre-create it on R2.
    S3Storage(s3_bucket, s3_endpoint, "us-east-1", "k", "s").ensure_bucket()
    storage = S3Storage(s3_bucket, s3_endpoint, "auto", "k", "s")
    storage.ensure_bucket()  # finds the bucket and leaves it alone
    up = storage.presign_upload("uploads/r2/a.mp4", MP4, expires_in=60, max_bytes=100)
    credential = parse_qs(urlsplit(up.url).query)["X-Amz-Credential"][0]
    assert credential.split("/")[2:4] == ["auto", "s3"]
    assert httpx.put(up.url, content=b"r2 bytes", headers=up.headers).status_code == 200
    assert httpx.get(storage.presign_download("uploads/r2/a.mp4", 60)).content == b"r2 bytes"
