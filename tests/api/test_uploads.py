"""POST /upload/presign, the direct PUT, and the checks estimate-video runs on what arrived."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.app import ApiFactory, ApiHarness, auth
from tests.fixtures.media import make_clip


def _estimate(api: ApiHarness, key: str, r2_key: str) -> tuple[int, dict[str, object]]:
    resp = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": r2_key, "target_fps_options": [60]},
    )
    return resp.status_code, resp.json()


def test_presign_creates_a_project_and_a_unique_server_chosen_key(api: ApiHarness) -> None:
    _, key = api.create_account()
    first = api.presign(key, "../../etc/My Clip!.mp4", size_bytes=1234)
    second = api.presign(key, "../../etc/My Clip!.mp4")
    assert first["key"] != second["key"]
    assert first["project_id"] != second["project_id"]
    assert ".." not in first["key"]
    assert first["key"].endswith("My_Clip_.mp4")
    assert first["method"] == "PUT"
    assert first["headers"]["Content-Type"] == "video/mp4"
    assert first["expires_at"]
    project = api.client.get(f"/projects/{first['project_id']}", headers=auth(key)).json()
    [upload] = project["inputs"]
    assert upload["key"] == first["key"]
    assert upload["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"filename": "a.mp4", "content_type": "image/png"}, 400, "video type"),
        ({"filename": "a.mp4", "content_type": "video/"}, 400, "video type"),
        ({"content_type": "video/mp4"}, 400, "filename"),
        ({"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 0}, 400, "size_bytes"),
        (
            {"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 250 * 1024**2 + 1},
            413,
            "262144000",
        ),
    ],
)
def test_presign_refusals(
    api: ApiHarness, body: dict[str, object], status: int, phrase: str
) -> None:
    _, key = api.create_account()
    resp = api.client.post("/upload/presign", json=body, headers=auth(key))
    assert resp.status_code == status, resp.text
    assert phrase in resp.json()["detail"]


def test_presign_needs_a_key(api: ApiHarness) -> None:
    resp = api.client.post(
        "/upload/presign", json={"filename": "a.mp4", "content_type": "video/mp4"}
    )
    assert resp.status_code == 401


def test_estimate_video_probes_the_stored_object(api: ApiHarness) -> None:
    _, key = api.create_account(free=0, paid=100)
    up = api.upload(key, frames=48, fps=24, width=160, height=96)
    status, body = _estimate(api, key, up["key"])
    assert status == 200, body
    video = body["video"]
    assert isinstance(video, dict)
    assert (video["width"], video["height"], video["codec"]) == (160, 96, "h264")
    assert video["has_audio"] is False
    assert body["project_id"] == up["project_id"]
    [option] = body["options"]  # type: ignore[misc]
    assert option["charged_xeconds"] == 2
    assert option["payment_kind"] == "paid"
    assert option["watermarked"] is False


def test_estimate_video_unknown_foreign_and_missing_objects(api: ApiHarness) -> None:
    _, key = api.create_account()
    _, other = api.create_account()
    assert _estimate(api, key, "uploads/nope/nothing.mp4")[0] == 404
    theirs = api.upload(other)
    status, body = _estimate(api, key, theirs["key"])
    assert status == 403
    assert "another account" in str(body["detail"])
    never_put = api.presign(key)
    status, body = _estimate(api, key, never_put["key"])
    assert status == 404
    assert "PUT the file" in str(body["detail"])


def test_non_video_bytes_are_400_and_deleted(api: ApiHarness) -> None:
    _, key = api.create_account()
    junk = api.tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    up = api.upload(key, junk)
    status, body = _estimate(api, key, up["key"])
    assert status == 400, body
    assert api.app.state.storage.head(up["key"]) is None
    again, body = _estimate(api, key, up["key"])
    assert again == 400
    assert "rejected" in str(body["detail"])


def test_truncated_video_is_400(api: ApiHarness) -> None:
    _, key = api.create_account()
    clip = make_clip(api.tmp_path / "full.mp4", frames=48)
    cut = api.tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    up = api.upload(key, cut)
    assert _estimate(api, key, up["key"])[0] == 400


def test_object_over_the_size_limit_is_413_and_deleted(api: ApiHarness) -> None:
    """S3 cannot cap a presigned PUT, so an oversized object can arrive; HEAD catches it."""
    _, key = api.create_account()
    up = api.presign(key)
    big = api.tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(api.settings.max_upload_bytes + 1)  # sparse: no real 250 MB on disk
    api.app.state.storage.upload_file(big, up["key"], "video/mp4")
    status, body = _estimate(api, key, up["key"])
    assert status == 413
    assert str(api.settings.max_upload_bytes) in str(body["detail"])
    assert api.app.state.storage.head(up["key"]) is None
    job = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60},
    )
    assert job.status_code == 413


def test_video_over_the_duration_limit_is_413_and_deleted(api_factory: ApiFactory) -> None:
    api = api_factory(max_duration_sec=1.5)
    _, key = api.create_account()
    up = api.upload(key, frames=48, fps=24)  # 2 s
    status, body = _estimate(api, key, up["key"])
    assert status == 413
    assert "1.5s" in str(body["detail"])
    assert api.app.state.storage.head(up["key"]) is None


def test_local_put_refuses_more_than_the_limit(api_factory: ApiFactory) -> None:
    api = api_factory(max_upload_bytes=2000)
    _, key = api.create_account()
    up = api.presign(key)
    resp = api.client.put(up["upload_url"], content=b"x" * 2001, headers=up["headers"])
    assert resp.status_code == 413
    assert api.app.state.storage.head(up["key"]) is None


def _padded_to(path: Path, size: int) -> Path:
    """`path` grown to exactly `size` bytes with a trailing MP4 `free` box (players skip it)."""
    data = path.read_bytes()
    pad = size - len(data)
    assert pad >= 8, "the clip to pad must be the smaller one"
    path.write_bytes(data + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8))
    return path


def test_a_verified_upload_cannot_be_replaced_even_at_the_same_size(api: ApiHarness) -> None:
    """Once priced, an upload is sealed (issue 12): the same URL, the same size and four times
    the video is refused, and the price and the job stay those of the clip that was probed."""
    _, key = api.create_account(free=0, paid=100)
    longer = make_clip(api.tmp_path / "long.mp4", frames=96, fps=24)  # 4 s
    shorter = _padded_to(
        make_clip(api.tmp_path / "short.mp4", frames=24, fps=24), longer.stat().st_size
    )
    up = api.presign(key, "clip.mp4")
    api.put(up, shorter)
    status, body = _estimate(api, key, up["key"])
    assert status == 200, body
    assert body["options"][0]["charged_xeconds"] == 1  # type: ignore[index]

    resp = api.client.request(
        up["method"], up["upload_url"], content=longer.read_bytes(), headers=up["headers"]
    )
    assert resp.status_code == 409, resp.text
    assert "presign a new upload" in resp.json()["detail"]
    status, body = _estimate(api, key, up["key"])
    assert status == 200, body
    assert body["options"][0]["charged_xeconds"] == 1  # type: ignore[index]
    job = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60},
    )
    assert job.status_code == 200, job.text
    assert job.json()["charged_xeconds"] == 1
