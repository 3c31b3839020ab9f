"""Which client sent a request: the peer's address, or behind trusted proxies the one they saw.

X-Forwarded-For is whatever the sender wrote, plus one address per proxy that appended the peer
it saw. So the header is read only when the direct peer is a configured trusted proxy, and from
the right: hops that are trusted proxies are skipped, and the first one that is not is the
client. Anything to its left was written by the client and proves nothing.

IPv6 clients are keyed by their /64: one subscriber is routinely given a whole /64, so keying a
bucket per address would give an attacker 2^64 buckets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reframe.config import ConfigurationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV6_CLIENT_PREFIX = 64


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> TrustedProxies:
        """From "10.0.0.0/8, 192.0.2.1" (REFRAME_TRUSTED_PROXIES) or a list of such items."""
        items = text.split(",") if isinstance(text, str) else list(text)
        networks: list[IPNetwork] = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"REFRAME_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR; give a "
                    "comma-separated list such as '10.0.0.0/8, 127.0.0.1'"
                ) from None
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def _parse_hop(text: str) -> IPAddress | None:
    """One X-Forwarded-For hop: `1.2.3.4`, `1.2.3.4:port`, `[v6]:port`, quoted; else None."""
    hop = text.strip().strip('"')
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:  # IPv4 with a port; bare IPv6 has at least two colons
        hop = hop.partition(":")[0]
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _key(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def client_address(peer: str, forwarded_for: Sequence[str], trusted: TrustedProxies) -> str:
    """The client's bucket name: its address (IPv6: its /64), per the module's rules.

    `forwarded_for` holds every X-Forwarded-For header in order (a proxy may add its own line).
    A peer that is not an IP (a Unix socket, a test client) is its own name.
    """
    peer_address = _parse_hop(peer)
    if peer_address is None:
        return peer or "unknown"
    if not trusted or peer_address not in trusted:
        return _key(peer_address)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    client = peer_address  # the last address vouched for by a trusted proxy
    for text in reversed(hops):
        hop = _parse_hop(text)
        if hop is None:
            break  # what a trusted proxy forwarded was not an address: stop at its sender
        client = hop
        if hop not in trusted:
            break
    return _key(client)
