"""The local backend over real HTTP (uvicorn on loopback), the way curl and browsers use it."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from reframe.storage.local import LocalStorage
from tests.fixtures.storage import storage_app

MP4 = "video/mp4"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStorage]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    storage = LocalStorage(
        tmp_path_factory.mktemp("http") / "objects", f"http://127.0.0.1:{port}", "http-secret"
    )
    server = uvicorn.Server(
        uvicorn.Config(storage_app(storage), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield storage
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    block = bytes(range(256)) * (size // 256)
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


@pytest.mark.slow
def test_large_upload_streams_to_disk_without_buffering(served: LocalStorage) -> None:
    total = 48 * MIB
    up = served.presign_upload("uploads/big/clip.mp4", MP4, expires_in=60, max_bytes=64 * MIB)
    tracemalloc.start()
    try:
        resp = httpx.put(up.url, content=chunks(total), headers=up.headers, timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 200, resp.text
    assert resp.json()["size_bytes"] == total
    path = served.path_for("uploads/big/clip.mp4")
    assert path.stat().st_size == total
    # Client and server share this process, so the peak covers both; the whole body is 48 MiB.
    print(f"upload of {total // MIB} MiB: peak Python allocation {peak / MIB:.2f} MiB")
    assert peak < 8 * MIB, f"peak Python allocation {peak / MIB:.1f} MiB"

    url = served.presign_download("uploads/big/clip.mp4", 60, filename="clip.mp4")
    with httpx.stream("GET", url, headers={"Range": f"bytes={total - 1000}-"}) as got:
        assert got.status_code == 206
        assert got.read() == b"".join(chunks(total))[-1000:]
    served.delete("uploads/big/clip.mp4")


def test_over_limit_upload_over_http_leaves_nothing(served: LocalStorage) -> None:
    up = served.presign_upload("uploads/over/clip.mp4", MP4, expires_in=60, max_bytes=1 * MIB)
    try:
        resp = httpx.put(up.url, content=chunks(8 * MIB), headers=up.headers, timeout=30)
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        # The server answers 413 and closes the connection while the client is still sending;
        # some clients report that as a broken pipe instead of reading the response.
        pass
    else:
        assert resp.status_code == 413
        assert "limit" in resp.json()["detail"]
    assert served.head("uploads/over/clip.mp4") is None
    folder = served.path_for("uploads/over/clip.mp4").parent
    assert not folder.exists() or list(folder.iterdir()) == []


def test_curl_style_upload_with_content_length(served: LocalStorage, tmp_path: Path) -> None:
    up = served.presign_upload("uploads/c/clip.mp4", MP4, expires_in=60, max_bytes=MIB)
    body = b"\x00\x00\x00\x18ftypmp42" + b"x" * 5000
    resp = httpx.put(up.url, content=body, headers={"Content-Type": "video/mp4"})
    assert resp.status_code == 200
    got = httpx.get(served.presign_download("uploads/c/clip.mp4", 60))
    assert got.content == body
    assert got.headers["content-type"] == MP4
