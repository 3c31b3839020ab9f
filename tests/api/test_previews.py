"""Previews (issue 13 part 4): POST /jobs with "preview": true, its price, allowance and refund."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from reframe.db.models import Job, JobStatus, LedgerEntry, LedgerReason
from reframe.jobs.lifecycle import JobLifecycle
from tests.fixtures.app import ApiFactory, ApiHarness, auth


def _preview(
    api: ApiHarness, key: str, up: dict[str, Any], fps: int = 60, **extra: Any
) -> dict[str, Any]:
    resp = _post(api, key, up, fps, preview=True, **extra)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _post(api: ApiHarness, key: str, up: dict[str, Any], fps: int, **extra: Any) -> Any:
    body = {"r2_key": up["key"], "project_id": up["project_id"], "target_fps": fps, **extra}
    return api.client.post("/jobs", headers=auth(key), json=body)


def _balance(api: ApiHarness, key: str) -> dict[str, int]:
    resp = api.client.get("/me", headers=auth(key))
    assert resp.status_code == 200, resp.text
    bal: dict[str, int] = resp.json()["balance"]
    return bal


def _entries(api: ApiHarness, job_id: str) -> list[tuple[LedgerReason, int]]:
    with api.db.session() as s:
        rows = s.scalars(select(LedgerEntry).where(LedgerEntry.job_id == job_id)).all()
        return sorted((r.reason, r.delta) for r in rows)


def test_pricing_config_states_the_preview_terms(api_factory: ApiFactory) -> None:
    api = api_factory(preview_free_per_day=2)
    previews = api.client.get("/pricing/config").json()["previews"]
    assert previews["free_per_day"] == 2
    assert (previews["default_seconds"], previews["max_seconds"]) == (3.0, 5.0)
    assert previews["watermarked"] is True
    assert previews["formula"] == "charged_xeconds = ceil(preview_seconds) x band multiplier"


def test_free_previews_then_paid_ones_through_the_ledger(api: ApiHarness) -> None:
    _, key = api.create_account(free=30, paid=0)
    up = api.upload(key, frames=96, fps=24)  # 4 s
    free = [_preview(api, key, up) for _ in range(3)]
    for body in free:
        assert (body["charged_xeconds"], body["payment_kind"], body["watermarked"]) == (
            0,
            "free",
            True,
        )
        assert (body["preview"], body["preview_seconds"]) == (True, 3.0)
        assert _entries(api, body["job_id"]) == []  # nothing taken, nothing to give back
    assert _balance(api, key)["free_xeconds"] == 30

    paid = _preview(api, key, up, 120)  # the 4th today: ceil(3) x 2
    assert (paid["charged_xeconds"], paid["payment_kind"], paid["watermarked"]) == (
        6,
        "free",
        True,
    )
    assert paid["balance"]["free_xeconds"] == 24
    assert _entries(api, paid["job_id"]) == [(LedgerReason.JOB_CHARGE, -6)]

    shown = api.client.get(f"/jobs/{paid['job_id']}", headers=auth(key)).json()
    assert (shown["preview"], shown["preview_seconds"], shown["charged_xeconds"]) == (True, 3.0, 6)
    assert shown["duration_sec"] == 4.0  # the source's length; the preview covers 3 s of it
    first = api.client.get(f"/jobs/{free[0]['job_id']}", headers=auth(key)).json()
    assert (first["preview"], first["charged_xeconds"], first["watermarked"]) == (True, 0, True)


def test_a_paid_credit_preview_is_still_watermarked(api_factory: ApiFactory) -> None:
    api = api_factory(preview_free_per_day=0)
    _, key = api.create_account(free=0, paid=10)
    up = api.upload(key, frames=96, fps=24)
    body = _preview(api, key, up, 120, preview_seconds=2.5)  # ceil(2.5) x 2
    assert (body["charged_xeconds"], body["payment_kind"], body["watermarked"]) == (
        6,
        "paid",
        True,
    )
    assert body["balance"]["paid_xeconds"] == 4
    too_dear = _post(api, key, up, 240, preview=True, preview_seconds=2.5)  # 12 > 4 left
    assert too_dear.status_code == 402
    assert "12 xeconds" in too_dear.json()["detail"]


def test_paid_preview_failure_refunds_exactly_once(api_factory: ApiFactory) -> None:
    api = api_factory(preview_free_per_day=0)
    _, key = api.create_account(free=0, paid=10)
    up = api.upload(key, frames=96, fps=24)
    body = _preview(api, key, up, 60, preview_seconds=2.5)  # ceil(2.5) x 1
    assert (body["charged_xeconds"], body["payment_kind"], body["watermarked"]) == (
        3,
        "paid",
        True,
    )
    assert _balance(api, key)["paid_xeconds"] == 7
    life = JobLifecycle(api.db.sessionmaker)
    first = life.fail(body["job_id"], "the render broke")
    second = life.fail(body["job_id"], "reported again")
    assert (first.refunded, second.refunded) == (3, 0)
    assert _balance(api, key)["paid_xeconds"] == 10
    assert _entries(api, body["job_id"]) == [
        (LedgerReason.JOB_CHARGE, -3),
        (LedgerReason.JOB_REFUND, 3),
    ]
    shown = api.client.get(f"/jobs/{body['job_id']}", headers=auth(key)).json()
    assert (shown["live_status"], shown["refunded_xeconds"]) == ("failed", 3)
    lines = api.client.get("/me/ledger", headers=auth(key)).json()["items"]
    assert [(line["kind"], line["amount_xeconds"]) for line in lines[:2]] == [
        ("refund", 3),
        ("charge", -3),
    ]
    assert lines[1]["description"] == "Charge for a preview of 2.5 s, render at 60 fps (smooth, x1)"


def test_a_failed_free_preview_gives_its_slot_back(api_factory: ApiFactory) -> None:
    api = api_factory(preview_free_per_day=1)
    _, key = api.create_account(free=30)
    up = api.upload(key, frames=96, fps=24)
    first = _preview(api, key, up)
    assert first["charged_xeconds"] == 0
    assert _preview(api, key, up)["charged_xeconds"] == 3  # the one free slot is taken
    settled = JobLifecycle(api.db.sessionmaker).fail(first["job_id"], "the render broke")
    assert (settled.changed, settled.refunded) == (True, 0)
    assert _preview(api, key, up)["charged_xeconds"] == 0
    assert _balance(api, key)["free_xeconds"] == 27


def test_the_allowance_is_per_account_and_per_utc_day(api_factory: ApiFactory) -> None:
    api = api_factory(preview_free_per_day=1)
    a_id, a_key = api.create_account(free=30)
    _, b_key = api.create_account(free=30)
    a_up, b_up = api.upload(a_key, frames=48, fps=24), api.upload(b_key, frames=48, fps=24)
    used = _preview(api, a_key, a_up)
    assert used["charged_xeconds"] == 0
    assert _preview(api, a_key, a_up)["charged_xeconds"] == 2  # a 2 s clip: ceil(2) x 1
    assert _preview(api, b_key, b_up)["charged_xeconds"] == 0  # another account's own slot
    with api.db.session() as s:  # a's jobs were yesterday's: today's slot is free again
        for job in s.scalars(select(Job).where(Job.account_id == a_id)):
            job.created_at -= timedelta(days=1)
        s.commit()
    assert _preview(api, a_key, a_up)["charged_xeconds"] == 0


def test_a_clip_shorter_than_the_preview_is_previewed_whole(api_factory: ApiFactory) -> None:
    api = api_factory(preview_free_per_day=0)
    _, key = api.create_account(free=30)
    up = api.upload(key, frames=24, fps=24)  # 1 s
    body = _preview(api, key, up, 120, preview_seconds=5)
    assert (body["charged_xeconds"], body["preview_seconds"]) == (2, 5.0)  # ceil(1) x 2


def test_full_jobs_are_priced_as_before_and_are_not_previews(api: ApiHarness) -> None:
    _, key = api.create_account(free=30, paid=10)
    up = api.upload(key, frames=48, fps=24)
    resp = _post(api, key, up, 120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["charged_xeconds"], body["watermarked"], body["preview"]) == (4, False, False)
    assert body["preview_seconds"] is None
    shown = api.client.get(f"/jobs/{body['job_id']}", headers=auth(key)).json()
    assert (shown["preview"], shown["preview_seconds"]) == (False, None)
    with api.db.session() as s:
        job = s.get(Job, body["job_id"])
        assert job is not None
        assert job.render_options is None
        assert job.status is JobStatus.QUEUED


def test_preview_length_rules_are_400_with_a_clear_detail(api: ApiHarness) -> None:
    account_id, key = api.create_account(free=30)
    up = api.upload(key, frames=48, fps=24)
    too_long = _post(api, key, up, 60, preview=True, preview_seconds=6)
    assert too_long.status_code == 400
    assert "at most 5 seconds" in too_long.json()["detail"]
    assert "preview_seconds" in too_long.json()["detail"]
    zero = _post(api, key, up, 60, preview=True, preview_seconds=0)
    assert zero.status_code == 400
    alone = _post(api, key, up, 60, preview_seconds=2)
    assert alone.status_code == 400
    assert "preview: true" in alone.json()["detail"]
    bad_fps = _post(api, key, up, 24, preview=True)  # not above the source's 24 fps
    assert bad_fps.status_code == 400
    assert api.client.get("/jobs", headers=auth(key)).json()["total"] == 0
    assert _balance(api, key)["free_xeconds"] == 30
    with api.db.session() as s:
        assert s.scalars(select(Job).where(Job.account_id == account_id)).all() == []


def test_the_public_estimate_quotes_a_preview(api: ApiHarness) -> None:
    body = {"duration_sec": 12.4, "source_fps": 24, "target_fps_options": [60, 120]}
    full = api.client.post("/pricing/estimate", json=body).json()
    assert [o["charged_xeconds"] for o in full["options"]] == [13, 26]  # unchanged
    assert (full["billable_seconds"], full["preview_seconds"]) == (13, None)
    resp = api.client.post("/pricing/estimate", json={**body, "preview_seconds": 2.5})
    assert resp.status_code == 200, resp.text
    preview = resp.json()
    assert (preview["billable_seconds"], preview["preview_seconds"]) == (3, 2.5)
    assert [o["charged_xeconds"] for o in preview["options"]] == [3, 6]
    too_long = api.client.post("/pricing/estimate", json={**body, "preview_seconds": 9})
    assert too_long.status_code == 400
    assert "preview_seconds" in too_long.json()["detail"]


def test_the_video_estimate_says_what_a_preview_would_charge_now(api_factory: ApiFactory) -> None:
    api = api_factory(preview_free_per_day=1)
    _, key = api.create_account(free=30, paid=10)
    up = api.upload(key, frames=96, fps=24)  # 4 s

    def estimate(**extra: Any) -> dict[str, Any]:
        body = {"r2_key": up["key"], "target_fps_options": [60, 120], **extra}
        resp = api.client.post("/pricing/estimate-video", json=body, headers=auth(key))
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        return out

    full = estimate()
    assert [o["charged_xeconds"] for o in full["options"]] == [4, 8]
    assert [o["watermarked"] for o in full["options"]] == [False, False]
    assert (full["preview_seconds"], full["free_previews_left"]) == (None, None)
    free = estimate(preview_seconds=3)
    assert free["free_previews_left"] == 1
    assert [(o["charged_xeconds"], o["watermarked"]) for o in free["options"]] == [
        (0, True),
        (0, True),
    ]
    assert _preview(api, key, up)["charged_xeconds"] == 0  # the quote held
    paid = estimate(preview_seconds=3)
    assert paid["free_previews_left"] == 0
    assert [
        (o["charged_xeconds"], o["payment_kind"], o["watermarked"]) for o in paid["options"]
    ] == [
        (3, "paid", True),
        (6, "paid", True),
    ]
    assert _preview(api, key, up, 120)["charged_xeconds"] == 6
