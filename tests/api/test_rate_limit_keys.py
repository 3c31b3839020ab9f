"""Attacks on the rate limiter's keys, through the real app on both limiter backends.

A bucket must belong to someone the service can tell apart: a verified account, or else the
client's address (behind a trusted proxy, the address that proxy saw). Anything the caller can
make up per request (a random bearer, a forged X-Forwarded-For) must not buy a fresh bucket.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.app import ApiFactory, ApiHarness, auth
from tests.web.test_auth import PASSWORD, form_token, sign_up

# Tight write bucket, reads off, unless a test says otherwise.
TIGHT = {"rate_limit_write_per_sec": 0.01, "rate_limit_write_burst": 5}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {}
    return {
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
    }


def fake_bearer() -> dict[str, str]:
    # Shaped like a real key, so nothing can tell it apart without looking it up.
    return auth("rf_live_" + secrets.token_urlsafe(32))


def client_at(api: ApiHarness, host: str) -> TestClient:
    return TestClient(api.app, base_url="http://testserver", client=(host, 40000))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/login", {"data": {"email": "a@example.com", "password": "x" * 12}}),
        ("POST", "/signup", {"data": {"email": "b@example.com", "password": "x" * 12}}),
        ("POST", "/pricing/estimate", {"json": {"duration_sec": 1, "target_fps": 60}}),
    ],
)
def test_a_fresh_fake_bearer_per_request_does_not_buy_a_fresh_bucket(
    api_factory: ApiFactory,
    backend_options: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    api = api_factory(**TIGHT, **backend_options)
    codes = [
        api.client.request(method, path, headers=fake_bearer(), **body).status_code
        for _ in range(100)
    ]
    assert codes.count(429) >= 100 - TIGHT["rate_limit_write_burst"], codes


def test_share_pages_with_fake_bearers_are_limited_by_address(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    api = api_factory(rate_limit_read_per_sec=0.01, rate_limit_read_burst=5, **backend_options)
    codes = [
        api.client.get(f"/share/{secrets.token_urlsafe(8)}", headers=fake_bearer()).status_code
        for _ in range(30)
    ]
    assert codes.count(429) >= 25, codes


def test_a_verified_key_is_one_bucket_from_any_address(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    api = api_factory(rate_limit_read_per_sec=0.01, rate_limit_read_burst=3, **backend_options)
    _, key = api.create_account(paid=5)
    hosts = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]
    codes = []
    for host in hosts:
        with client_at(api, host) as client:
            codes.append(client.get("/me", headers=auth(key)).status_code)
    assert codes == [200, 200, 200, 429]
    # The account's bucket is not the address's: anonymous reads from there still pass.
    with client_at(api, hosts[0]) as client:
        assert client.get("/pricing/config").status_code == 200


def test_fake_bearers_do_not_spend_a_real_account_bucket(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    api = api_factory(rate_limit_read_per_sec=0.01, rate_limit_read_burst=3, **backend_options)
    _, key = api.create_account(paid=5)
    with client_at(api, "198.51.100.7") as attacker:
        for _ in range(5):
            attacker.get("/me", headers=fake_bearer())
    with client_at(api, "198.51.100.8") as owner:
        assert owner.get("/me", headers=auth(key)).status_code == 200


PROXIED = {"trusted_proxies": "10.0.0.0/8, fd00::/8", "rate_limit_read_per_sec": 0.01}


def test_two_clients_behind_a_trusted_proxy_keep_their_own_buckets(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    api = api_factory(**PROXIED, rate_limit_read_burst=2, **backend_options)
    with client_at(api, "10.1.2.3") as proxy:

        def get(client_ip: str) -> int:
            headers = {"X-Forwarded-For": client_ip}
            return proxy.get("/pricing/config", headers=headers).status_code

        assert [get("203.0.113.10") for _ in range(3)] == [200, 200, 429]
        assert [get("203.0.113.11") for _ in range(3)] == [200, 200, 429]


def test_the_right_most_untrusted_hop_is_the_client(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    # A client may send any X-Forwarded-For; the proxy appends the address it saw. Only that
    # one, the right-most hop that is not a trusted proxy, identifies the client.
    api = api_factory(**PROXIED, rate_limit_read_burst=2, **backend_options)
    with client_at(api, "10.1.2.3") as proxy:
        codes = [
            proxy.get(
                "/pricing/config",
                headers={
                    "X-Forwarded-For": f"{secrets.token_hex(2)}.0.0.1, 203.0.113.20, 10.9.9.9"
                },
            ).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 429]


def test_an_untrusted_peer_cannot_forge_x_forwarded_for(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    api = api_factory(**PROXIED, rate_limit_read_burst=2, **backend_options)
    with client_at(api, "203.0.113.99") as attacker:
        codes = [
            attacker.get(
                "/pricing/config", headers={"X-Forwarded-For": f"198.51.100.{n}"}
            ).status_code
            for n in range(5)
        ]
    assert codes == [200, 200, 429, 429, 429]


def test_ipv6_clients_are_bucketed_by_their_64_prefix(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    # One subscriber gets a whole /64: one bucket per address there is one bucket per request.
    api = api_factory(rate_limit_read_per_sec=0.01, rate_limit_read_burst=2, **backend_options)
    codes = []
    for n in range(3):
        with client_at(api, f"2001:db8:1:2::{n + 1:x}") as client:
            codes.append(client.get("/pricing/config").status_code)
    assert codes == [200, 200, 429]


# -- per-email login throttle -------------------------------------------------------------------


def _sign_up(client: TestClient, email: str) -> None:
    sign_up(client, email, PASSWORD)
    client.cookies.clear()


def _log_in(api: ApiHarness, host: str, email: str, password: str) -> Any:
    with client_at(api, host) as client:
        token = form_token(client, "/login")
        return client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": token},
            follow_redirects=False,
        )


THROTTLE = {
    "rate_limit_read_per_sec": 0,
    "rate_limit_write_per_sec": 0,
    "login_free_attempts": 3,
    # Long enough that no test run is slow enough to see it end: the waits' growth and bound
    # are timed in tests/jobs/test_login_throttle.py, on the throttle itself.
    "login_backoff_base_sec": 30.0,
    "login_backoff_max_sec": 60.0,
}


def test_failed_logins_for_one_email_back_off_from_any_address(
    api_factory: ApiFactory, backend_options: dict[str, Any]
) -> None:
    api = api_factory(**THROTTLE, **backend_options)
    _sign_up(api.client, "victim@example.com")
    # A success forgets the failures before it: two typos and the right password.
    codes = [_log_in(api, "198.51.100.1", "victim@example.com", p).status_code for p in ("a", "b")]
    assert codes == [401, 401]
    assert _log_in(api, "198.51.100.2", "victim@example.com", PASSWORD).status_code == 303
    # Every guess from a different address: the address buckets never see a repeat.
    codes = [
        _log_in(api, f"198.51.100.{n}", "victim@example.com", f"guess-{n:06d}").status_code
        for n in range(10, 14)
    ]
    assert codes == [401, 401, 401, 429]
    refused = _log_in(api, "198.51.100.50", "Victim@Example.com ", PASSWORD)
    assert refused.status_code == 429  # the right password waits too: it is not checked now
    assert 29 <= int(refused.headers["Retry-After"]) <= 30
    assert "Too many failed log-ins" in refused.text
    # Another email is not affected.
    assert _log_in(api, "198.51.100.1", "someone@example.com", "guess-0").status_code == 401


# -- bounded tables ------------------------------------------------------------------------------


def test_the_in_process_bucket_table_stays_bounded(api_factory: ApiFactory) -> None:
    api = api_factory(rate_limit_max_keys=50)
    for n in range(300):
        with client_at(api, f"198.51.{n // 250}.{n % 250}") as client:
            client.get("/pricing/config", headers=fake_bearer())
    assert api.app.state.rate_limits.limiter.size() <= 50
    # The remembered owners of the 300 made-up bearers, too.
    assert 0 < api.app.state.request_identity.size() <= 50
