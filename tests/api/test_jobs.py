"""POST /jobs (acceptance and payment), GET /jobs/{id}, GET /jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from reframe.db.models import Job, LedgerEntry, LedgerReason
from tests.fixtures.app import ApiHarness, auth


def _start(api: ApiHarness, key: str, up: dict[str, Any], fps: int, **headers: str) -> Any:
    return api.client.post(
        "/jobs",
        headers={**auth(key), **headers},
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": fps},
    )


def _ledger_sum(api: ApiHarness, account_id: str) -> int:
    with api.db.session() as s:
        return int(
            s.scalar(
                select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                    LedgerEntry.account_id == account_id
                )
            )
            or 0
        )


def test_paid_credit_pays_first_and_renders_clean(api: ApiHarness) -> None:
    account_id, key = api.create_account(free=30, paid=10)
    up = api.upload(key, frames=48, fps=24)  # 2 s
    resp = _start(api, key, up, 120)  # 2 s x2 = 4
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["charged_xeconds"], body["payment_kind"], body["watermarked"]) == (
        4,
        "paid",
        False,
    )
    assert body["band"] == "slomo"
    assert body["multiplier"] == 2
    assert body["balance"] == {"free_xeconds": 30, "paid_xeconds": 6, "total_xeconds": 36}
    assert _ledger_sum(api, account_id) == 36
    with api.db.session() as s:
        job = s.get(Job, body["job_id"])
        assert job is not None
        assert job.payment_kind == "paid"
        assert job.status == "queued"
        charge = s.scalars(select(LedgerEntry).where(LedgerEntry.job_id == job.id)).one()
        assert (charge.reason, charge.delta) == (LedgerReason.JOB_CHARGE, -4)


def test_free_credit_pays_when_paid_does_not_cover_and_watermarks(api: ApiHarness) -> None:
    _, key = api.create_account(free=30, paid=3)
    up = api.upload(key, frames=48, fps=24)
    body = _start(api, key, up, 240).json()  # 2 x 4 = 8 > 3 paid
    assert (body["payment_kind"], body["watermarked"]) == ("free", True)
    assert body["balance"]["free_xeconds"] == 22
    assert body["balance"]["paid_xeconds"] == 3


def test_insufficient_credit_is_402_with_amounts_and_takes_nothing(api: ApiHarness) -> None:
    account_id, key = api.create_account(free=5, paid=6)
    up = api.upload(key, frames=48, fps=24)
    resp = _start(api, key, up, 240)  # needs 8; neither pool alone covers it
    assert resp.status_code == 402
    detail = resp.json()["detail"]
    assert "8 xeconds" in detail
    assert "6 paid" in detail
    assert "5 free" in detail
    assert _ledger_sum(api, account_id) == 11
    assert api.client.get("/jobs", headers=auth(key)).json()["total"] == 0


def test_target_fps_rules_are_400(api: ApiHarness) -> None:
    _, key = api.create_account()
    up = api.upload(key, frames=30, fps=30)
    for fps, phrase in ((30, "greater than the source"), (24, "greater than"), (241, "240")):
        resp = _start(api, key, up, fps)
        assert resp.status_code == 400, fps
        assert phrase in resp.json()["detail"], fps
    resp = api.client.post(
        "/jobs", headers=auth(key), json={"r2_key": up["key"], "project_id": up["project_id"]}
    )
    assert resp.status_code == 400
    assert "target_fps" in resp.json()["detail"]


def test_other_accounts_things_are_403_and_unknown_ones_404(api: ApiHarness) -> None:
    _, mine = api.create_account()
    _, theirs = api.create_account()
    my_up = api.upload(mine)
    their_up = api.upload(theirs)
    mixed = {"r2_key": my_up["key"], "project_id": their_up["project_id"], "target_fps": 60}
    assert api.client.post("/jobs", headers=auth(mine), json=mixed).status_code == 403
    mixed = {"r2_key": their_up["key"], "project_id": my_up["project_id"], "target_fps": 60}
    assert api.client.post("/jobs", headers=auth(mine), json=mixed).status_code == 403
    unknown = {"r2_key": my_up["key"], "project_id": "f" * 32, "target_fps": 60}
    assert api.client.post("/jobs", headers=auth(mine), json=unknown).status_code == 404
    their_job = _start(api, theirs, their_up, 60).json()["job_id"]
    assert api.client.get(f"/jobs/{their_job}", headers=auth(mine)).status_code == 403
    assert api.client.get(f"/jobs/{'0' * 32}", headers=auth(mine)).status_code == 404
    assert api.client.get(f"/jobs/{their_job}").status_code == 401


def test_upload_from_another_project_is_400(api: ApiHarness) -> None:
    _, key = api.create_account()
    a = api.upload(key)
    b = api.presign(key)
    resp = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": a["key"], "project_id": b["project_id"], "target_fps": 60},
    )
    assert resp.status_code == 400
    assert a["project_id"] in resp.json()["detail"]


def test_idempotency_key_returns_the_same_job_and_charges_once(api: ApiHarness) -> None:
    account_id, key = api.create_account(free=30)
    up = api.upload(key)
    first = _start(api, key, up, 60, **{"Idempotency-Key": "abc"}).json()
    again = _start(api, key, up, 60, **{"Idempotency-Key": "abc"}).json()
    assert first["job_id"] == again["job_id"]
    assert _ledger_sum(api, account_id) == 29
    other = _start(api, key, up, 60, **{"Idempotency-Key": "def"}).json()
    assert other["job_id"] != first["job_id"]
    assert _ledger_sum(api, account_id) == 28


def test_list_is_recent_first_and_paginated(api: ApiHarness) -> None:
    _, key = api.create_account(free=100)
    _, other = api.create_account(free=100)
    up = api.upload(key)
    ids = [_start(api, key, up, fps).json()["job_id"] for fps in (30, 60, 90, 120, 240)]
    _start(api, other, api.upload(other), 60)
    page = api.client.get("/jobs?limit=2", headers=auth(key)).json()
    assert page["total"] == 5
    assert page["next_offset"] == 2
    assert [j["job_id"] for j in page["items"]] == ids[::-1][:2]
    rest = api.client.get("/jobs?limit=2&offset=4", headers=auth(key)).json()
    assert [j["job_id"] for j in rest["items"]] == [ids[0]]
    assert rest["next_offset"] is None
    everything = api.client.get("/jobs?limit=100", headers=auth(key)).json()["items"]
    assert [j["job_id"] for j in everything] == ids[::-1]
    assert all(j["live_status"] == "queued" for j in everything)
    assert api.client.get("/jobs?limit=0", headers=auth(key)).status_code == 400
    resp = api.client.get("/jobs?offset=-1", headers=auth(key))
    assert resp.status_code == 400
    assert "offset" in resp.json()["detail"]


def test_job_status_fields(api: ApiHarness) -> None:
    _, key = api.create_account()
    up = api.upload(key)
    job_id = _start(api, key, up, 60).json()["job_id"]
    body = api.client.get(f"/jobs/{job_id}", headers=auth(key)).json()
    for field in ("progress", "frames_done", "frames_total", "eta_sec", "error", "output_file_id"):
        assert field in body
    assert body["r2_key"] == up["key"]
    assert body["refunded_xeconds"] == 0
    assert body["live_status"] in {
        "pending",
        "queued",
        "no_workers",
        "cold_start",
        "processing",
        "done",
        "failed",
    }
