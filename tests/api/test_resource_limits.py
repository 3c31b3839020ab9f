"""Resource exhaustion (issue 12 item 8): request bodies are capped, and so are outstanding
upload URLs per account."""

from __future__ import annotations

from collections.abc import Iterator

from tests.fixtures.app import ApiFactory, auth


def test_oversized_json_body_is_413_before_it_is_read(api_factory: ApiFactory) -> None:
    api = api_factory(max_json_body_bytes=4096)
    _, key = api.create_account()
    body = b'{"filename": "a.mp4", "content_type": "video/mp4", "pad": "' + b"x" * 100_000 + b'"}'
    resp = api.client.post(
        "/upload/presign",
        content=body,
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert resp.status_code == 413, resp.text
    assert "4096" in resp.json()["detail"]


def test_oversized_chunked_body_is_413(api_factory: ApiFactory) -> None:
    # No Content-Length: the limit is counted while the body streams in.
    api = api_factory(max_json_body_bytes=4096)

    def chunks() -> Iterator[bytes]:
        yield b'{"duration_sec": 1, "source_fps": 24, "target_fps": 60, "pad": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    resp = api.client.post(
        "/pricing/estimate", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413, resp.text
    assert "4096" in resp.json()["detail"]


def test_small_bodies_still_work(api_factory: ApiFactory) -> None:
    api = api_factory(max_json_body_bytes=4096)
    _, key = api.create_account()
    api.presign(key)


def test_storage_put_keeps_its_own_presigned_limit(api_factory: ApiFactory) -> None:
    # A video is far larger than any JSON body; the signed URL's max_bytes governs it.
    api = api_factory(max_json_body_bytes=4096)
    _, key = api.create_account()
    up = api.presign(key)
    resp = api.client.put(up["upload_url"], content=b"\0" * 100_000, headers=up["headers"])
    assert resp.status_code == 200, resp.text


def test_outstanding_presigns_are_limited_per_account(api_factory: ApiFactory) -> None:
    api = api_factory(max_pending_uploads=3)
    _, key = api.create_account()
    _, other = api.create_account()
    for _ in range(3):
        api.presign(key)
    resp = api.client.post(
        "/upload/presign",
        json={"filename": "a.mp4", "content_type": "video/mp4"},
        headers=auth(key),
    )
    assert resp.status_code == 429, resp.text
    detail = resp.json()["detail"]
    assert "3 uploads" in detail
    assert "estimate-video" in detail
    assert int(resp.headers["Retry-After"]) >= 1
    # Another account is not affected.
    api.presign(other)


def test_a_verified_upload_frees_its_slot(api_factory: ApiFactory) -> None:
    api = api_factory(max_pending_uploads=1)
    _, key = api.create_account()
    up = api.upload(key)
    resp = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": up["key"], "target_fps_options": [60]},
    )
    assert resp.status_code == 200, resp.text
    api.presign(key)
