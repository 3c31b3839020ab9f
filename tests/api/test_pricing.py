"""GET /pricing/config and POST /pricing/estimate (public)."""

from __future__ import annotations

import pytest

from reframe.config import CreditPack
from tests.fixtures.app import ApiFactory, ApiHarness


def test_config_lists_bands_packs_limits_and_free_policy(api: ApiHarness) -> None:
    resp = api.client.get("/pricing/config")  # no key needed
    assert resp.status_code == 200
    body = resp.json()
    assert [(b["name"], b["min_fps"], b["max_fps"], b["multiplier"]) for b in body["bands"]] == [
        ("smooth", 24, 60, 1),
        ("slomo", 61, 120, 2),
        ("ultra", 121, 240, 4),
    ]
    assert body["limits"]["max_upload_bytes"] == 250 * 1024 * 1024
    assert body["limits"]["max_duration_sec"] == 120
    assert body["free_credits"]["signup_xeconds"] == 30
    assert body["free_credits"]["free_renders_watermarked"] is True
    assert body["credit_packs"]
    assert all(p["xeconds"] > 0 for p in body["credit_packs"])


def test_config_follows_operator_settings(api_factory: ApiFactory) -> None:
    api = api_factory(
        credit_packs=[CreditPack(id="x", name="X", xeconds=7, price_cents=99)],
        max_upload_bytes=1000,
        free_xeconds_on_signup=5,
    )
    body = api.client.get("/pricing/config").json()
    assert [p["id"] for p in body["credit_packs"]] == ["x"]
    assert body["limits"]["max_upload_bytes"] == 1000
    assert body["free_credits"]["signup_xeconds"] == 5


@pytest.mark.parametrize(
    ("duration", "target", "charged"),
    [(10.0, 60, 10), (10.2, 60, 11), (10.2, 61, 22), (0.4, 120, 2), (3.0, 121, 12), (3, 240, 12)],
)
def test_estimate_single_target(
    api: ApiHarness, duration: float, target: int, charged: int
) -> None:
    resp = api.client.post(
        "/pricing/estimate",
        json={"duration_sec": duration, "source_fps": 24, "target_fps": target},
    )
    assert resp.status_code == 200, resp.text
    [option] = resp.json()["options"]
    assert option["allowed"] is True
    assert option["charged_xeconds"] == charged


def test_estimate_options_explain_what_is_not_allowed(api: ApiHarness) -> None:
    resp = api.client.post(
        "/pricing/estimate",
        json={"duration_sec": 5, "source_fps": 60, "target_fps_options": [30, 60, 90, 300]},
    )
    assert resp.status_code == 200
    opts = {o["target_fps"]: o for o in resp.json()["options"]}
    assert not opts[30]["allowed"]
    assert "greater than the source" in opts[30]["reason"]
    assert not opts[60]["allowed"]
    assert "greater than the source" in opts[60]["reason"]
    assert opts[90]["allowed"]
    assert opts[90]["band"] == "slomo"
    assert opts[90]["charged_xeconds"] == 10
    assert not opts[300]["allowed"]
    assert "between 24 and 240" in opts[300]["reason"]


def test_estimate_over_the_length_limit_is_not_allowed(api: ApiHarness) -> None:
    resp = api.client.post(
        "/pricing/estimate", json={"duration_sec": 121, "source_fps": 24, "target_fps": 60}
    )
    [option] = resp.json()["options"]
    assert option["allowed"] is False
    assert "120s" in option["reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration_sec": 5, "source_fps": 24}, "target_fps"),
        ({"source_fps": 24, "target_fps": 60}, "duration_sec"),
        ({"duration_sec": -1, "source_fps": 24, "target_fps": 60}, "duration_sec"),
        ({"duration_sec": 5, "source_fps": 24, "target_fps": "fast"}, "target_fps"),
        ({"duration_sec": 5, "source_fps": 24, "target_fps_options": []}, "target_fps_options"),
    ],
)
def test_estimate_bad_body_is_400_naming_the_field(
    api: ApiHarness, body: dict[str, object], field: str
) -> None:
    resp = api.client.post("/pricing/estimate", json=body)
    assert resp.status_code == 400
    assert field in resp.json()["detail"]


def test_malformed_json_is_400(api: ApiHarness) -> None:
    resp = api.client.post(
        "/pricing/estimate", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert "JSON" in resp.json()["detail"]
