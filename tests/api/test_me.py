"""GET /me, POST /me/api-key and authentication (401)."""

from __future__ import annotations

from tests.fixtures.app import ApiHarness, auth


def test_me_shows_account_balance_and_key_metadata_never_the_key(api: ApiHarness) -> None:
    account_id, key = api.create_account("me@example.com", free=30, paid=12)
    resp = api.client.get("/me", headers=auth(key))
    assert resp.status_code == 200
    body = resp.json()
    assert body["account"]["id"] == account_id
    assert body["account"]["email"] == "me@example.com"
    assert body["balance"] == {"free_xeconds": 30, "paid_xeconds": 12, "total_xeconds": 42}
    assert key.startswith(body["api_key"]["prefix"])
    assert len(body["api_key"]["prefix"]) < len(key) // 2
    assert body["api_key"]["created_at"]
    assert body["api_key"]["last_used_at"] is not None  # this very request used it
    assert key not in resp.text


def test_missing_and_malformed_keys_are_401_with_bearer_challenge(api: ApiHarness) -> None:
    _, key = api.create_account()
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        auth("rf_live_" + "x" * 43),
        auth(key[:-1] + ("A" if key[-1] != "A" else "B")),  # one character off
        auth("not-a-key"),
    ):
        resp = api.client.get("/me", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.headers["www-authenticate"] == "Bearer"
        assert set(resp.json()) == {"detail"}
        assert "API key" in resp.json()["detail"]


def test_rotation_issues_a_new_key_and_revokes_the_old(api: ApiHarness) -> None:
    _, old = api.create_account()
    resp = api.client.post("/me/api-key", headers=auth(old))
    assert resp.status_code == 200
    new = resp.json()["api_key"]
    assert new != old
    assert new.startswith("rf_live_")
    assert new.startswith(resp.json()["prefix"])
    assert api.client.get("/me", headers=auth(old)).status_code == 401
    me = api.client.get("/me", headers=auth(new))
    assert me.status_code == 200
    assert me.json()["api_key"]["prefix"] == resp.json()["prefix"]
    # Rotating needs a valid key: the revoked one cannot mint another.
    assert api.client.post("/me/api-key", headers=auth(old)).status_code == 401


def test_keys_are_per_account(api: ApiHarness) -> None:
    a_id, a_key = api.create_account()
    b_id, b_key = api.create_account()
    assert api.client.get("/me", headers=auth(a_key)).json()["account"]["id"] == a_id
    assert api.client.get("/me", headers=auth(b_key)).json()["account"]["id"] == b_id
