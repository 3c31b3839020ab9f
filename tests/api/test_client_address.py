"""Who the client is, from the peer address and X-Forwarded-For behind trusted proxies."""

from __future__ import annotations

import pytest

from reframe.api.client_address import TrustedProxies, client_address
from reframe.config import ConfigurationError, Settings

TRUSTED = TrustedProxies.parse("10.0.0.0/8, 192.0.2.1, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", [], "203.0.113.5"),
        # An untrusted peer's header is ignored, whatever it says.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        # A trusted peer: the right-most hop that is not a proxy.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.0.0.9"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6", "198.51.100.1, 192.0.2.1"], "198.51.100.1"),  # two headers
        # Only proxies in the chain: the left-most is as far back as anyone can see.
        ("10.0.0.2", ["10.0.0.7, 10.0.0.8"], "10.0.0.7"),
        # A trusted proxy that forwarded nothing: the proxy itself.
        ("10.0.0.2", [], "10.0.0.2"),
        # Garbage stops the walk at the last hop a trusted proxy vouched for.
        ("10.0.0.2", ["not-an-ip, 10.0.0.9"], "10.0.0.9"),
        ("10.0.0.2", ["198.51.100.1:4431"], "198.51.100.1"),
        ("10.0.0.2", ['"[2001:db8::1]:80"'], "2001:db8::/64"),
        # IPv6 by /64; an IPv4-mapped peer is its IPv4 address.
        ("2001:db8:aa:bb:1:2:3:4", [], "2001:db8:aa:bb::/64"),
        ("::ffff:203.0.113.5", [], "203.0.113.5"),
        ("testclient", [], "testclient"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected


def test_settings_parse_and_refuse_trusted_proxies() -> None:
    assert Settings(trusted_proxies="127.0.0.1/32,::1").trusted_proxy_networks == (
        TrustedProxies.parse("127.0.0.1/32, ::1")
    )
    assert not Settings().trusted_proxy_networks
    with pytest.raises(ConfigurationError, match="REFRAME_TRUSTED_PROXIES"):
        TrustedProxies.parse("10.0.0.0/8, nonsense")
    with pytest.raises(ValueError, match="REFRAME_TRUSTED_PROXIES"):
        Settings(trusted_proxies="10.0.0.0/33")
