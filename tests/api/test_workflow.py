"""The reference's canonical flow: presign -> PUT -> estimate-video -> jobs -> poll."""

from __future__ import annotations

from tests.fixtures.app import ApiHarness, auth
from tests.fixtures.media import make_clip


def test_canonical_workflow_ends_queued(api: ApiHarness) -> None:
    _, key = api.create_account(free=30)
    clip = make_clip(api.tmp_path / "clip.mp4", frames=60, fps=24, audio=True)  # 2.5 s

    presign = api.client.post(
        "/upload/presign",
        headers=auth(key),
        json={"filename": "clip.mp4", "content_type": "video/mp4"},
    ).json()
    assert {"upload_url", "key", "project_id", "expires_at", "method", "headers"} <= set(presign)

    put = api.client.put(
        presign["upload_url"], content=clip.read_bytes(), headers={"Content-Type": "video/mp4"}
    )
    assert put.status_code in (200, 201, 204), put.text

    est = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": presign["key"], "target_fps_options": [60, 120, 240]},
    )
    assert est.status_code == 200, est.text
    body = est.json()
    assert body["video"]["width"] == 128
    assert body["video"]["height"] == 96
    assert abs(body["video"]["fps"] - 24) < 1e-6
    assert body["video"]["has_audio"] is True
    assert 2.4 <= body["video"]["duration_sec"] <= 2.7
    charged = {o["target_fps"]: o["charged_xeconds"] for o in body["options"]}
    assert charged == {60: 3, 120: 6, 240: 12}
    assert all(o["covered_by_balance"] and o["watermarked"] for o in body["options"])

    job = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": presign["key"], "project_id": presign["project_id"], "target_fps": 60},
    )
    assert job.status_code == 200, job.text
    created = job.json()
    assert created["live_status"] == "queued"
    assert created["charged_xeconds"] == 3
    assert created["watermarked"] is True
    assert created["payment_kind"] == "free"
    assert created["balance"] == {"free_xeconds": 27, "paid_xeconds": 0, "total_xeconds": 27}

    poll = api.client.get(f"/jobs/{created['job_id']}", headers=auth(key))
    assert poll.status_code == 200
    status = poll.json()
    assert status["live_status"] == "queued"
    assert status["progress"] == 0
    assert status["output_url"] is None
    assert [e["status"] for e in status["events"]] == ["queued"]
