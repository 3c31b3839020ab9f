"""GET /me/ledger (where the credits went) and GET /jobs/{id}'s cancel_refund_xeconds, on SQLite
and PostgreSQL (issue 13, part 7)."""

from __future__ import annotations

from typing import Any

from reframe.db.models import CreditPool, JobStatus
from reframe.jobs.progress import LiveProgress
from reframe.services import ledger, transitions
from tests.fixtures.app import ApiHarness, auth, finish_with_output


def start_job(api: ApiHarness, key: str, upload: dict[str, Any], target_fps: int) -> str:
    body = {"r2_key": upload["key"], "project_id": upload["project_id"], "target_fps": target_fps}
    resp = api.client.post("/jobs", json=body, headers=auth(key))
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def processing(api: ApiHarness, job_id: str, frames_done: int, frames_total: int) -> None:
    """What the dispatcher and the driver's progress reports leave in the row."""
    with api.db.session() as session:
        row = transitions.lock_job(session, job_id)
        row.attempts = 1
        transitions.record(session, row, JobStatus.COLD_START)
        transitions.record(session, row, JobStatus.PROCESSING)
        row.frames_done, row.frames_total = frames_done, frames_total
        row.progress = frames_done / frames_total
        session.commit()


def job(api: ApiHarness, key: str, job_id: str) -> dict[str, Any]:
    resp = api.client.get(f"/jobs/{job_id}", headers=auth(key))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def all_entries(api: ApiHarness, key: str, limit: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        resp = api.client.get(
            "/me/ledger", params={"limit": limit, "offset": offset}, headers=auth(key)
        )
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert (page["limit"], page["offset"]) == (limit, offset)
        assert len(page["items"]) <= limit
        entries += page["items"]
        offset = page["next_offset"]
    return entries


def test_the_ledger_shows_every_movement_and_sums_to_the_balance(api: ApiHarness) -> None:
    _, key = api.create_account(free=None, paid=20)  # the signup gift (30 free) and a grant
    upload = api.upload(key)  # 1 s clip: 60 fps costs 1, 120 fps 2, 240 fps 4

    cancelled = start_job(api, key, upload, 120)
    assert job(api, key, cancelled)["cancel_refund_xeconds"] == 2  # queued: everything
    assert api.client.post(f"/jobs/{cancelled}/cancel", headers=auth(key)).status_code == 200
    assert job(api, key, cancelled)["cancel_refund_xeconds"] is None  # ended

    failed = start_job(api, key, upload, 60)
    api.app.state.lifecycle.fail(failed, "the render failed")

    partly = start_job(api, key, upload, 240)
    processing(api, partly, 12, 48)
    # 12 of 48 frames rendered: floor(4 x 12/48) = 1 xecond is billed, 3 would come back.
    assert job(api, key, partly)["cancel_refund_xeconds"] == 3
    cancel = api.client.post(f"/jobs/{partly}/cancel", headers=auth(key)).json()
    assert cancel["refunded_xeconds"] == 3

    done = start_job(api, key, upload, 60)
    finish_with_output(api, done)
    assert job(api, key, done)["cancel_refund_xeconds"] is None

    entries = all_entries(api, key, limit=3)
    ids = [e["entry_id"] for e in entries]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert len(set(ids)) == len(ids)  # pages neither repeat nor skip (total below)
    first = api.client.get("/me/ledger", headers=auth(key)).json()
    assert first["total"] == len(entries) == 9
    assert (first["limit"], first["offset"], first["next_offset"]) == (20, 0, None)
    shape = [(e["kind"], e["amount_xeconds"], e["pool"], e["job_id"]) for e in entries]
    assert shape == [
        ("charge", -1, "paid", done),
        ("cancel", 3, "paid", partly),
        ("charge", -4, "paid", partly),
        ("refund", 1, "paid", failed),
        ("charge", -1, "paid", failed),
        ("cancel", 2, "paid", cancelled),
        ("charge", -2, "paid", cancelled),
        ("grant", 20, "paid", None),
        ("signup", 30, "free", None),
    ]
    assert entries[0]["description"] == "Charge for a render at 60 fps (smooth, x1)"
    assert entries[1]["description"].startswith("Refund of the frames not rendered")
    assert entries[3]["description"].startswith("Refund: a render at 60 fps")
    assert entries[5]["description"].startswith("Refund of the whole charge")
    assert all(e["created_at"] for e in entries)

    me = api.client.get("/me", headers=auth(key)).json()["balance"]
    assert first["balance"] == me
    for pool in ("free", "paid"):
        total = sum(e["amount_xeconds"] for e in entries if e["pool"] == pool)
        assert total == me[f"{pool}_xeconds"]
    assert me == {
        "free_xeconds": 30,
        "paid_xeconds": 20 - 2 + 2 - 1 + 1 - 4 + 3 - 1,
        "total_xeconds": 30 + 18,
    }


def test_cancel_refund_follows_live_progress_like_the_cancel(api: ApiHarness) -> None:
    _, key = api.create_account(free=0, paid=50)
    job_id = start_job(api, key, api.upload(key), 240)
    processing(api, job_id, 10, 100)
    assert job(api, key, job_id)["cancel_refund_xeconds"] == 4 - (4 * 10) // 100
    # The live store is ahead of the throttled row: both the poll and the cancel use it.
    api.app.state.progress.put(job_id, LiveProgress("processing", 60, 100, 4.0, 1, 0.0))
    shown = job(api, key, job_id)["cancel_refund_xeconds"]
    assert shown == 4 - (4 * 60) // 100
    cancel = api.client.post(f"/jobs/{job_id}/cancel", headers=auth(key)).json()
    assert cancel["refunded_xeconds"] == shown
    assert cancel["cancel_refund_xeconds"] is None
    listed = api.client.get("/jobs", headers=auth(key)).json()["items"]
    assert [j["cancel_refund_xeconds"] for j in listed] == [None]


def test_the_ledger_is_the_callers_own_and_checks_its_page(api: ApiHarness) -> None:
    a_id, a_key = api.create_account(free=5)
    _, b_key = api.create_account(free=7, paid=3)
    with api.db.session() as session:
        ledger.grant(session, a_id, 2, CreditPool.PAID, note="internal: ticket 991")
        session.commit()
    a = api.client.get("/me/ledger", headers=auth(a_key)).json()
    b = api.client.get("/me/ledger", headers=auth(b_key)).json()
    assert [(e["kind"], e["amount_xeconds"]) for e in a["items"]] == [("grant", 2), ("signup", 5)]
    assert [(e["kind"], e["amount_xeconds"]) for e in b["items"]] == [("grant", 3), ("signup", 7)]
    # An operator's note is theirs; the owner reads a plain description.
    assert "ticket" not in str(a)
    assert api.client.get("/me/ledger").status_code == 401
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 2**31}):
        resp = api.client.get("/me/ledger", params=params, headers=auth(a_key))
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["detail"]
    past = api.client.get("/me/ledger", params={"offset": 5}, headers=auth(a_key)).json()
    assert (past["items"], past["total"], past["next_offset"]) == ([], 2, None)


def test_the_ledger_and_the_new_field_are_in_openapi(api: ApiHarness) -> None:
    spec = api.client.get("/openapi.json").json()
    op = spec["paths"]["/me/ledger"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LedgerPageOut"
    }
    schemas = spec["components"]["schemas"]
    assert schemas["LedgerPageOut"]["examples"][0]["items"]
    assert schemas["LedgerEntryOut"]["examples"]
    assert set(schemas["LedgerKind"]["enum"]) >= {"signup", "grant", "charge", "refund", "cancel"}
    field = schemas["JobOut"]["properties"]["cancel_refund_xeconds"]
    assert "cancel_refund_xeconds" not in schemas["JobOut"]["required"]  # additive
    assert field["examples"] == [2]


def test_operator_refunds_are_refunds_and_adjustments_not_cancels(api: ApiHarness) -> None:
    _, key = api.create_account(free=0, paid=20)
    upload = api.upload(key)
    life = api.app.state.lifecycle
    done = start_job(api, key, upload, 120)
    finish_with_output(api, done)
    assert life.operator_refund(done, "customer complaint", operator="ops") == 2
    partly = start_job(api, key, upload, 240)
    processing(api, partly, 24, 48)
    api.client.post(f"/jobs/{partly}/cancel", headers=auth(key))  # 2 of 4 back
    assert life.operator_refund(partly, "goodwill", operator="ops") == 2  # the rest
    entries = all_entries(api, key, limit=100)
    shape = [(e["kind"], e["amount_xeconds"], e["job_id"]) for e in entries]
    assert shape == [
        ("adjustment", 2, partly),
        ("cancel", 2, partly),
        ("charge", -4, partly),
        ("refund", 2, done),
        ("charge", -2, done),
        ("grant", 20, None),
    ]
    assert entries[3]["description"] == "Refund by the operator for a render at 120 fps (slomo, x2)"
    assert "goodwill" not in str(entries)
    assert sum(e["amount_xeconds"] for e in entries) == 20
