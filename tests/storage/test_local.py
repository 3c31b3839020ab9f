"""The local backend end to end: signed URLs minted by LocalStorage, served by the storage
router through a real ASGI app, bytes on disk checked."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import pytest
from fastapi.testclient import TestClient

from reframe.config import Settings
from reframe.errors import InvalidInput, NotFound
from reframe.storage import build_storage, new_object_key, validate_key
from reframe.storage.local import LocalStorage
from tests.fixtures.storage import FakeClock, storage_app

MP4 = "video/mp4"


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


def leftover_parts(storage: LocalStorage) -> list[Path]:
    return [p for p in storage.root.rglob("*") if p.name.endswith(".part")]


def test_signed_put_then_get_round_trip(
    local_storage: LocalStorage, storage_client: TestClient
) -> None:
    key = new_object_key("uploads/acct1", "My Clip (final).mp4")
    assert key.endswith("/My_Clip_final_.mp4")
    payload = os.urandom(300_000)
    up = local_storage.presign_upload(key, MP4, expires_in=60, max_bytes=1_000_000)
    assert up.method == "PUT"
    assert up.headers == {"Content-Type": MP4}
    assert up.url.startswith("http://testserver/storage/uploads/acct1/")

    def body() -> Iterator[bytes]:
        # A generator body is sent chunked, without Content-Length: the router must stream it.
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    resp = storage_client.put(path_and_query(up.url), content=body(), headers=up.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"key": key, "size_bytes": len(payload)}
    assert local_storage.path_for(key).read_bytes() == payload
    info = local_storage.head(key)
    assert info is not None
    assert (info.size, info.content_type) == (len(payload), MP4)
    assert leftover_parts(local_storage) == []

    url = local_storage.presign_download(key, expires_in=60, filename="clip é.mp4")
    got = storage_client.get(path_and_query(url))
    assert got.status_code == 200
    assert got.content == payload
    assert got.headers["content-type"] == MP4
    assert got.headers["accept-ranges"] == "bytes"
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "clip%20%C3%A9.mp4" in disposition


def test_get_with_range_returns_partial_content(
    local_storage: LocalStorage, storage_client: TestClient, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 40
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    local_storage.upload_file(src, "outputs/a/out.mp4", MP4)
    url = path_and_query(local_storage.presign_download("outputs/a/out.mp4", 60))

    resp = storage_client.get(url, headers={"Range": "bytes=100-199"})
    assert resp.status_code == 206
    assert resp.content == payload[100:200]
    assert resp.headers["content-range"] == f"bytes 100-199/{len(payload)}"

    tail = storage_client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.content == payload[-10:]

    beyond = storage_client.get(url, headers={"Range": f"bytes={len(payload) + 5}-"})
    assert beyond.status_code == 416

    head = storage_client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(payload))
    assert head.content == b""


def test_expired_urls_are_refused(
    local_storage: LocalStorage, storage_client: TestClient, clock: FakeClock
) -> None:
    up = local_storage.presign_upload("uploads/x/a.mp4", MP4, expires_in=30, max_bytes=100)
    down = local_storage.presign_download("uploads/x/a.mp4", expires_in=30)
    clock.advance(29)
    ok = storage_client.put(path_and_query(up.url), content=b"abc", headers=up.headers)
    assert ok.status_code == 200
    clock.advance(2)
    late = storage_client.put(path_and_query(up.url), content=b"abc", headers=up.headers)
    assert late.status_code == 403
    assert "expired" in late.json()["detail"]
    late_get = storage_client.get(path_and_query(down))
    assert late_get.status_code == 403
    assert "expired" in late_get.json()["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"expires": "9999999999"},
        {"max_bytes": "999999999"},
        {"content_type": "text/html"},
        {"sig": "A" * 43},
    ],
)
def test_tampered_upload_urls_are_refused(
    local_storage: LocalStorage, storage_client: TestClient, change: dict[str, str]
) -> None:
    up = local_storage.presign_upload("uploads/x/a.mp4", MP4, expires_in=60, max_bytes=100)
    headers = {"Content-Type": change.get("content_type", MP4)}
    resp = storage_client.put(with_query(up.url, **change), content=b"abc", headers=headers)
    assert resp.status_code == 403
    assert "signature" in resp.json()["detail"]
    assert local_storage.head("uploads/x/a.mp4") is None


def test_signature_is_bound_to_the_key_and_the_secret(
    local_storage: LocalStorage, storage_client: TestClient, tmp_path: Path
) -> None:
    up = local_storage.presign_upload("uploads/x/a.mp4", MP4, expires_in=60, max_bytes=100)
    other_key = path_and_query(up.url).replace("/uploads/x/a.mp4", "/uploads/x/b.mp4")
    resp = storage_client.put(other_key, content=b"abc", headers=up.headers)
    assert resp.status_code == 403

    other_secret = LocalStorage(local_storage.root, "http://testserver", "another-secret")
    forged = other_secret.presign_upload("uploads/x/a.mp4", MP4, expires_in=60, max_bytes=100)
    resp = storage_client.put(path_and_query(forged.url), content=b"abc", headers=up.headers)
    assert resp.status_code == 403


def test_filename_of_a_download_url_cannot_be_changed(
    local_storage: LocalStorage, storage_client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "f").write_bytes(b"x")
    local_storage.upload_file(tmp_path / "f", "o/k/v.mp4", MP4)
    url = local_storage.presign_download("o/k/v.mp4", 60, filename="v.mp4")
    resp = storage_client.get(with_query(url, filename="evil.html"))
    assert resp.status_code == 403


def test_wrong_method_is_refused(
    local_storage: LocalStorage, storage_client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    local_storage.upload_file(tmp_path / "f", "o/k/v.mp4", MP4)
    up = local_storage.presign_upload("o/k/v.mp4", MP4, expires_in=60, max_bytes=100)
    down = local_storage.presign_download("o/k/v.mp4", 60)

    # An upload URL does not allow reading, and a download URL does not allow writing.
    assert storage_client.get(path_and_query(up.url)).status_code == 403
    put = storage_client.put(path_and_query(down), content=b"overwrite", headers=up.headers)
    assert put.status_code == 403
    assert local_storage.path_for("o/k/v.mp4").read_bytes() == b"hello"
    assert storage_client.delete(path_and_query(down)).status_code == 405


def test_wrong_content_type_is_refused(
    local_storage: LocalStorage, storage_client: TestClient
) -> None:
    up = local_storage.presign_upload("u/x/a.mp4", MP4, expires_in=60, max_bytes=100)
    resp = storage_client.put(
        path_and_query(up.url), content=b"abc", headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 403
    assert "Content-Type: video/mp4" in resp.json()["detail"]


def test_unsigned_and_malformed_urls_are_refused(storage_client: TestClient) -> None:
    assert storage_client.get("/storage/u/x/a.mp4").status_code == 403
    resp = storage_client.get("/storage/u/x/a.mp4?expires=soon&sig=abc")
    assert resp.status_code == 403
    assert "detail" in resp.json()


def test_upload_over_the_signed_size_is_413_and_leaves_nothing(
    local_storage: LocalStorage, storage_client: TestClient
) -> None:
    key = "uploads/big/a.mp4"
    up = local_storage.presign_upload(key, MP4, expires_in=60, max_bytes=200_000)

    def body() -> Iterator[bytes]:
        for _ in range(64):
            yield b"\0" * 65536

    resp = storage_client.put(path_and_query(up.url), content=body(), headers=up.headers)
    assert resp.status_code == 413
    assert "200000-byte limit" in resp.json()["detail"]
    assert local_storage.head(key) is None
    assert leftover_parts(local_storage) == []

    # With a declared length the refusal comes before any byte is read.
    declared = storage_client.put(
        path_and_query(up.url), content=b"\0" * 200_001, headers=up.headers
    )
    assert declared.status_code == 413
    assert local_storage.head(key) is None
    assert leftover_parts(local_storage) == []

    exact = storage_client.put(path_and_query(up.url), content=b"\1" * 200_000, headers=up.headers)
    assert exact.status_code == 200


def test_failed_upload_keeps_the_previous_object(
    local_storage: LocalStorage, storage_client: TestClient
) -> None:
    key = "uploads/keep/a.mp4"
    up = local_storage.presign_upload(key, MP4, expires_in=60, max_bytes=10)
    assert storage_client.put(
        path_and_query(up.url), content=b"first", headers=up.headers
    ).is_success
    resp = storage_client.put(path_and_query(up.url), content=b"x" * 11, headers=up.headers)
    assert resp.status_code == 413
    assert local_storage.path_for(key).read_bytes() == b"first"


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "uploads/../../etc/passwd",
        "/etc/passwd",
        "uploads//a.mp4",
        "uploads/.a.mp4.1234.part",
        "uploads/a\\b",
        "uploads/a b",
        "",
        "a" * 600,
    ],
)
def test_unsafe_keys_are_rejected(local_storage: LocalStorage, key: str) -> None:
    with pytest.raises(InvalidInput):
        validate_key(key)
    with pytest.raises(InvalidInput):
        local_storage.presign_upload(key, MP4, expires_in=60, max_bytes=10)
    with pytest.raises(InvalidInput):
        local_storage.path_for(key)


def test_path_traversal_over_http_is_rejected(
    local_storage: LocalStorage, storage_client: TestClient, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("do not serve")
    # Percent-encoded dots survive client-side URL normalisation and reach the router decoded.
    resp = storage_client.get("/storage/a/%2e%2e/%2e%2e/secret.txt?expires=9999999999&sig=x")
    assert resp.status_code == 400
    assert "not allowed" in resp.json()["detail"]


def test_symlink_out_of_the_root_is_rejected(local_storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local_storage.root.mkdir(parents=True)
    (local_storage.root / "link").symlink_to(outside)
    with pytest.raises(InvalidInput, match="outside the storage folder"):
        local_storage.path_for("link/file.mp4")


def test_missing_object_is_404(local_storage: LocalStorage, storage_client: TestClient) -> None:
    url = local_storage.presign_download("uploads/none/a.mp4", 60)
    resp = storage_client.get(path_and_query(url))
    assert resp.status_code == 404
    assert "uploads/none/a.mp4" in resp.json()["detail"]


def test_file_operations(local_storage: LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(b"video bytes")
    local_storage.upload_file(src, "p/1/in.mp4", MP4)
    with local_storage.local_path("p/1/in.mp4") as path:
        assert path.read_bytes() == b"video bytes"
    dest = tmp_path / "copy.mp4"
    local_storage.download_file("p/1/in.mp4", dest)
    assert dest.read_bytes() == b"video bytes"
    local_storage.delete("p/1/in.mp4")
    assert local_storage.head("p/1/in.mp4") is None
    assert not (local_storage.root / "p").exists(), "empty per-upload folders are removed"
    local_storage.delete("p/1/in.mp4")  # deleting twice is not an error
    with pytest.raises(NotFound), local_storage.local_path("p/1/in.mp4"):
        pass
    with pytest.raises(NotFound):
        local_storage.download_file("p/1/in.mp4", dest)


def test_new_object_keys_are_unique_and_safe() -> None:
    keys = {new_object_key("uploads/acct", "../../x y.mp4") for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert validate_key(key) == key
        assert key.endswith("/x_y.mp4")
    assert new_object_key("u", "....").endswith("/video")


def test_build_storage_picks_the_local_backend(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    storage = build_storage(settings)
    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "var" / "storage").resolve()
    assert not storage.root.exists(), "nothing is created before the first upload"
    url = storage.presign_download("a/b.mp4", 60)
    assert url.startswith("http://127.0.0.1:8000/storage/a/b.mp4?")


def test_router_answers_404_when_the_backend_is_not_local() -> None:
    with TestClient(storage_app(object())) as client:
        resp = client.get("/storage/a/b.mp4?expires=1&sig=x")
    assert resp.status_code == 404
    assert "local storage backend" in resp.json()["detail"]


def test_oversized_upload_stops_reading_the_body(local_storage: LocalStorage) -> None:
    """Driven at the ASGI level to count how much of the body the router actually pulls."""
    key = "uploads/big/b.mp4"
    up = local_storage.presign_upload(key, MP4, expires_in=60, max_bytes=200_000)
    parts = urlsplit(up.url)
    chunk, total_chunks = b"\0" * 65536, 1000
    pulled = 0
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < total_chunks}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", MP4.encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    # A fresh thread: pytest-playwright's sync API may already run an event loop in this one.
    worker = threading.Thread(
        target=anyio.run, args=(storage_app(local_storage), scope, receive, send)
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    # 200 000 bytes fit in 3.05 chunks: the 4th one crosses the limit and reading stops there.
    assert pulled == 4
    assert local_storage.head(key) is None
    assert leftover_parts(local_storage) == []


def test_keys_that_collide_with_folders_or_files_are_409(
    local_storage: LocalStorage, storage_client: TestClient
) -> None:
    up = local_storage.presign_upload("a/b/c.mp4", MP4, expires_in=60, max_bytes=100)
    assert storage_client.put(path_and_query(up.url), content=b"x", headers=up.headers).is_success
    for key in ("a/b", "a/b/c.mp4/d.mp4"):
        clash = local_storage.presign_upload(key, MP4, expires_in=60, max_bytes=100)
        resp = storage_client.put(path_and_query(clash.url), content=b"y", headers=clash.headers)
        assert resp.status_code == 409
    assert local_storage.path_for("a/b/c.mp4").read_bytes() == b"x"


def test_openapi_documents_the_storage_routes(local_storage: LocalStorage) -> None:
    paths = storage_app(local_storage).openapi()["paths"]
    operations = paths["/storage/{key}"]
    assert {"put", "get"} <= set(operations)
    assert {"403", "404", "413"} <= set(operations["put"]["responses"])
    assert operations["put"]["tags"] == ["storage"]
