"""What a webhook may be: the destinations Reframe will call, and how its notifications are signed.

The policy half of webhooks, used where a job is accepted (the API checks `webhook_url`, the
service creates the account's signing secret) and by the sender (reframe.jobs.webhooks), which
checks every destination again right before connecting.

Receivers verify `Reframe-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256(account webhook secret, f"{t}.{raw body}"), and should reject timestamps older than
a few minutes (replays).

SSRF: a webhook URL is user input that makes this server open connections. The host is resolved
and every address must be public; the sender then connects to an address that was checked (not
re-resolved), so DNS rebinding between the check and the request cannot redirect it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from reframe.db.models import Account
from reframe.errors import InvalidInput

SIGNATURE_HEADER = "Reframe-Signature"
EVENT_ID_HEADER = "Reframe-Event-Id"
USER_AGENT = "Reframe-Webhooks/1"
MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Reframe-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance_sec: int = 300
) -> bool:
    """What a receiver does: check the MAC in constant time and refuse stale timestamps."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_sec:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 ranges that reach IPv4 through a relay, translator or tunnel. Whatever IPv4 address
# they name, the hop on the way decides where the request really lands (6to4 2002:7f00:1:: is
# 127.0.0.1 at the relay), and no webhook receiver needs one, so they are never destinations.
# Python's `is_global` calls 6to4 global; it is matched here by name, not left to that table.
_IPV4_TRANSITION_RANGES = tuple(
    (ipaddress.IPv6Network(network), name)
    for network, name in (
        ("2002::/16", "6to4"),
        ("2001::/32", "Teredo"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
    )
)


def _embedded_ipv4(addr: ipaddress.IPv6Address, name: str) -> ipaddress.IPv4Address | None:
    if name == "6to4":
        return addr.sixtofour
    if name in ("NAT64", "IPv4-translated"):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None  # Teredo obfuscates its client; local-use NAT64 embeds by its own prefix length


def _why_not_public_ipv6(addr: ipaddress.IPv6Address) -> str | None:
    """The IPv6-only reasons; None leaves the address to the checks shared with IPv4."""
    for network, name in _IPV4_TRANSITION_RANGES:
        if addr in network:
            embedded = _embedded_ipv4(addr, name)
            return f"{name} ({embedded})" if embedded is not None else name
    low = int(addr) & 0xFFFFFFFF
    if int(addr) >> 32 == 0 and low > 1:  # ::a.b.c.d; "::" and "::1" are checked below
        return f"IPv4-compatible ({ipaddress.IPv4Address(low)})"
    # ISATAP interface identifiers (::0:5efe:a.b.c.d, ::200:5efe:a.b.c.d) name the IPv4 host
    # that the tunnel delivers to: that address decides, whatever the prefix.
    if (int(addr) >> 32) & 0xFDFFFFFF == 0x5EFE:
        inner = ipaddress.IPv4Address(low)
        reason = _why_not_public(inner)
        if reason is not None:
            return f"ISATAP ({inner}, {reason})"
    if addr.is_site_local:  # fec0::/10: deprecated, but routed inside some networks
        return "site-local"
    return None


def _why_not_public(addr: IPAddress) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return _why_not_public(addr.ipv4_mapped)
        reason = _why_not_public_ipv6(addr)
        if reason is not None:
            return reason
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_private:
        return "private"
    if addr.is_multicast:
        return "multicast"
    if addr.is_unspecified or addr.is_reserved or not addr.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Destination:
    """A checked webhook URL: where to connect (`addresses`) and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query sent in the request line
    addresses: tuple[str, ...]


def check_destination(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> Destination:
    """Parse, resolve and vet `url`; raises `InvalidInput` (400) with the reason."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("webhook_url must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "webhook_url must not carry credentials; verify our Reframe-Signature header instead"
        )
    host = parts.hostname
    if not host:
        raise InvalidInput("webhook_url has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput(f"webhook_url has an invalid port: {exc}") from exc
    try:
        addresses = list(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(f"webhook_url host {host!r} does not resolve: {exc}") from exc
    if not addresses:
        raise InvalidInput(f"webhook_url host {host!r} does not resolve to any address")
    if not allow_private:
        for raw in addresses:
            addr = ipaddress.ip_address(raw.split("%", 1)[0])
            reason = _why_not_public(addr)
            if reason is not None:
                raise InvalidInput(
                    f"webhook_url host {host!r} resolves to {addr}, a {reason} address; "
                    "webhooks are only sent to public addresses (an operator can allow private "
                    "ones with REFRAME_WEBHOOK_ALLOW_PRIVATE=true)"
                )
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination(url, parts.scheme, host, port, target, tuple(addresses))


def ensure_webhook_secret(session: Session, account: Account) -> str:
    """The account's signing secret, created on first use (the caller commits)."""
    if not account.webhook_secret:
        account.webhook_secret = new_webhook_secret()
        session.flush()
    return account.webhook_secret
