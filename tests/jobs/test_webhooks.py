from __future__ import annotations

import json
import socket
from collections.abc import Sequence

import pytest

from reframe.errors import InvalidInput
from reframe.jobs.webhooks import backoff_delay, deliver
from reframe.services.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    check_destination,
    new_webhook_secret,
    sign,
    verify,
)
from tests.jobs.receiver import http_receiver


def fixed(*addresses: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        return list(addresses)

    return resolve


def test_signature_verifies_and_detects_tampering() -> None:
    secret = new_webhook_secret()
    body = b'{"status":"done"}'
    header = sign(secret, body, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=")
    assert verify(secret, header, body, now=1_800_000_010)
    assert not verify(secret, header, body + b" ", now=1_800_000_010)
    assert not verify("whsec_other", header, body, now=1_800_000_010)
    # A captured request replayed later is refused by its timestamp.
    assert not verify(secret, header, body, now=1_800_000_000 + 301)
    # The timestamp is covered by the MAC: moving it forward breaks the signature.
    forged = header.replace("t=1800000000", "t=1800000300")
    assert not verify(secret, forged, body, now=1_800_000_300)
    assert not verify(secret, "garbage", body)


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    mac = hmac.new(b"s3cret", b"42.{}", hashlib.sha256).hexdigest()
    assert sign("s3cret", b"{}", 42) == f"t=42,v1={mac}"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoints live here
        ("fe80::1", "link-local"),
        ("fd00::5", "private"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped IPv6 must not sneak past
        ("0.0.0.0", "private"),  # noqa: S104 - a destination under test, not a bind
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
    ],
)
def test_guard_refuses_non_public_addresses(address: str, kind: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_destination(
            "https://hooks.example.com/x", allow_private=False, resolver=fixed(address)
        )
    assert kind in info.value.message
    assert "REFRAME_WEBHOOK_ALLOW_PRIVATE" in info.value.message


def test_guard_checks_every_resolved_address() -> None:
    # One public and one private answer: an attacker controlling DNS could pick either later.
    with pytest.raises(InvalidInput, match=r"10\.0\.0\.7"):
        check_destination(
            "https://hooks.example.com/",
            allow_private=False,
            resolver=fixed("93.184.216.34", "10.0.0.7"),
        )


def test_guard_accepts_public_and_builds_the_request_target() -> None:
    dest = check_destination(
        "https://hooks.example.com:8443/in?x=1",
        allow_private=False,
        resolver=fixed("93.184.216.34", "2606:2800:220:1::1"),
    )
    assert (dest.scheme, dest.host, dest.port, dest.target) == (
        "https",
        "hooks.example.com",
        8443,
        "/in?x=1",
    )
    assert dest.addresses == ("93.184.216.34", "2606:2800:220:1::1")


def test_operator_setting_allows_private_destinations() -> None:
    dest = check_destination("http://10.0.0.2/h", allow_private=True, resolver=fixed("10.0.0.2"))
    assert dest.addresses == ("10.0.0.2",)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://user:pw@example.com/", "credentials"),
        ("https:///nohost", "no host"),
        ("https://example.com:99999/", "invalid port"),
        ("https://example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_guard_refuses_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_destination(url, allow_private=True, resolver=fixed("93.184.216.34"))


def test_guard_resolves_real_names() -> None:
    # `localhost` really resolves (no network needed) and must be refused as loopback.
    with pytest.raises(InvalidInput, match="loopback"):
        check_destination("http://localhost:9/x", allow_private=False)
    with pytest.raises(InvalidInput, match="does not resolve"):
        check_destination("http://no-such-host.invalid/x", allow_private=False)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 5.0) for n in range(1, 6)] == [5.0, 10.0, 20.0, 40.0, 80.0]
    assert backoff_delay(30, 5.0, cap_sec=600) == 600


def test_delivery_to_a_real_receiver_is_signed() -> None:
    secret = new_webhook_secret()
    body = json.dumps({"job_id": "j1", "status": "done"}).encode()
    with http_receiver() as rec:
        results = deliver(
            rec.url,
            secret,
            "evt-1",
            body,
            allow_private=True,
            max_attempts=3,
            backoff_base_sec=0.01,
        )
        got = rec.wait_for(1)
    assert [r.ok for r in results] == [True]
    assert len(got) == 1
    assert got[0].path == "/hooks/reframe?src=test"
    assert got[0].body == body
    assert got[0].headers["Content-Type"] == "application/json"
    assert got[0].headers[EVENT_ID_HEADER] == "evt-1"
    assert verify(secret, got[0].headers[SIGNATURE_HEADER], got[0].body)


def test_delivery_retries_server_errors_with_backoff() -> None:
    slept: list[float] = []
    with http_receiver() as rec:
        rec.statuses = [503, 500]
        results = deliver(
            rec.url,
            "s",
            "evt-2",
            b"{}",
            allow_private=True,
            max_attempts=5,
            backoff_base_sec=2.0,
            sleep=slept.append,
        )
        got = rec.wait_for(3)
    assert [(r.ok, r.status) for r in results] == [(False, 503), (False, 500), (True, 200)]
    assert slept == [2.0, 4.0]
    assert len(got) == 3
    assert {g.headers[EVENT_ID_HEADER] for g in got} == {"evt-2"}


def test_delivery_gives_up_on_a_permanent_refusal_and_after_max_attempts() -> None:
    with http_receiver() as rec:
        rec.statuses = [410]
        results = deliver(
            rec.url, "s", "e", b"{}", allow_private=True, max_attempts=5, backoff_base_sec=0
        )
    assert [(r.ok, r.status, r.retriable) for r in results] == [(False, 410, False)]
    with http_receiver() as rec:
        rec.statuses = [502] * 10
        results = deliver(
            rec.url, "s", "e", b"{}", allow_private=True, max_attempts=3, backoff_base_sec=0
        )
    assert [r.status for r in results] == [502, 502, 502]


def test_delivery_reports_connection_failures_as_retriable() -> None:
    # A port nobody listens on: grab a free one and close it.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    results = deliver(
        f"http://127.0.0.1:{port}/",
        "s",
        "e",
        b"{}",
        allow_private=True,
        max_attempts=2,
        backoff_base_sec=0,
    )
    assert len(results) == 2
    assert all(not r.ok and r.retriable and r.status is None for r in results)
    assert "127.0.0.1" in (results[0].error or "")


def test_delivery_with_the_guard_on_never_reaches_loopback() -> None:
    with http_receiver() as rec:
        results = deliver(
            rec.url, "s", "e", b"{}", allow_private=False, max_attempts=3, backoff_base_sec=0
        )
        assert rec.received == []
    assert len(results) == 1
    assert not results[0].retriable
    assert "loopback" in (results[0].error or "")
