"""Webhook SSRF: IPv6 forms that carry or reach an IPv4 address are not public destinations.

A 6to4 address such as 2002:7f00:1:: is 127.0.0.1 behind a relay; NAT64 (64:ff9b::/96,
64:ff9b:1::/48) and Teredo (2001::/32) translate or tunnel to IPv4 the same way. Python's
`is_global` calls several of them global, so the guard must know them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from reframe.errors import InvalidInput
from reframe.services.webhooks import check_destination


def _resolver(address: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        return [address]

    return resolve


def _refusal(address: str) -> str:
    with pytest.raises(InvalidInput) as info:
        check_destination(
            "https://hooks.example.com/x", allow_private=False, resolver=_resolver(address)
        )
    return info.value.message


@pytest.mark.parametrize(
    ("address", "kind", "embedded"),
    [
        ("2002:7f00:1::", "6to4", "127.0.0.1"),
        ("2002:a00:1::1", "6to4", "10.0.0.1"),
        ("2002:a9fe:a9fe::", "6to4", "169.254.169.254"),
        ("2002:808:808::1", "6to4", "8.8.8.8"),  # the relay path is the risk, not the target
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo", None),
        ("2001::1", "Teredo", None),
        ("64:ff9b::7f00:1", "NAT64", "127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "NAT64", "169.254.169.254"),
        ("64:ff9b::808:808", "NAT64", "8.8.8.8"),
        ("64:ff9b:1::a00:1", "NAT64", None),
        ("::ffff:0:7f00:1", "IPv4-translated", "127.0.0.1"),
        ("::7f00:1", "IPv4-compatible", "127.0.0.1"),
        ("2001:db8:1::5efe:a00:1", "ISATAP", "10.0.0.1"),
        ("2600:1f18::200:5efe:a9fe:a9fe", "ISATAP", "169.254.169.254"),
        ("fec0::1", "site-local", None),
    ],
)
def test_ipv6_forms_of_ipv4_are_refused(address: str, kind: str, embedded: str | None) -> None:
    message = _refusal(address)
    assert kind in message
    if embedded is not None:
        assert embedded in message  # the operator sees which IPv4 address it would reach
    assert "REFRAME_WEBHOOK_ALLOW_PRIVATE" in message


@pytest.mark.parametrize(
    "address",
    [
        "2606:4700:4700::1111",
        # Only the IPv4 address an ISATAP identifier names decides; a public one is fine.
        "2600:1f18::5efe:808:808",
    ],
)
def test_public_ipv6_is_accepted(address: str) -> None:
    dest = check_destination(
        "https://hooks.example.com/x", allow_private=False, resolver=_resolver(address)
    )
    assert dest.addresses == (address,)
