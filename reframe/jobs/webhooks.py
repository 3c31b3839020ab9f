"""Signed webhook notifications of job status changes, guarded against SSRF.

Every status change of a job that has a `webhook_url` is written to an outbox table in the same
transaction as the change (reframe.jobs.transitions), so a crash can delay a notification but
never lose one. The sender drains the outbox: one HTTP attempt per due row, exponential backoff
between attempts, a bounded number of attempts.

Receivers verify `Reframe-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256(account webhook secret, f"{t}.{raw body}"), and should reject timestamps older than
a few minutes (replays). `Reframe-Event-Id` is stable across retries of one notification.

SSRF: a webhook URL is user input that makes this server open connections. The host is resolved
and every address must be public; the connection is then made to an address that was checked
(not re-resolved), so DNS rebinding between the check and the request cannot redirect it.
Redirects are not followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import queue
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.base import utcnow
from reframe.db.models import Account, WebhookDelivery
from reframe.errors import InvalidInput

if TYPE_CHECKING:
    from reframe.config import Settings

log = logging.getLogger(__name__)

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


def _system_resolver(host: str, port: int) -> list[str]:
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
    url: str, *, allow_private: bool, resolver: Resolver = _system_resolver
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


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context
        self.raw_sock: socket.socket | None = None

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.raw_sock = raw  # what the deadline's watchdog shuts, during the handshake too
        # Certificate and SNI are for the URL's host name, while the socket goes to the
        # address that passed the check.
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    status: int | None
    error: str | None
    retriable: bool


def _is_retriable(status: int) -> bool:
    # The receiver's other 4xx answers mean "this will never work" (gone, unauthorised...).
    return status >= 500 or status in (408, 409, 425, 429)


def _cut(conn: http.client.HTTPConnection, fired: threading.Event) -> None:
    """Shut the attempt's socket down: a blocked read or write returns at once."""
    fired.set()
    for sock in (getattr(conn, "raw_sock", None), conn.sock):
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def post_once(
    dest: Destination,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    deadline: float | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> AttemptResult:
    """One POST to the first checked address that accepts a connection, all of it (every
    address tried, TLS, the whole answer) over by `deadline` (time.monotonic()).

    `timeout` bounds each socket operation only: a receiver that sends one byte every few
    seconds never trips it, so a watchdog shuts the socket down when the deadline comes.
    """
    end = deadline if deadline is not None else time.monotonic() + 3 * timeout
    errors: list[str] = []
    for address in dest.addresses:
        remaining = end - time.monotonic()
        if remaining <= 0:
            errors.append("the delivery deadline passed before this address was tried")
            break
        conn: http.client.HTTPConnection
        op_timeout = min(timeout, remaining)
        if dest.scheme == "https":
            ctx = tls_context or ssl.create_default_context()
            conn = _PinnedHTTPSConnection(dest.host, dest.port, address, op_timeout, ctx)
        else:
            conn = _PinnedHTTPConnection(dest.host, dest.port, address, op_timeout)
        fired = threading.Event()
        watchdog = threading.Timer(remaining, _cut, args=(conn, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("POST", dest.target, body=body, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)  # drain a little so the connection closes cleanly
            status = response.status
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if fired.is_set():
                errors.append(f"{address}: no complete answer within the delivery deadline")
                break
            errors.append(f"{address}: {exc.__class__.__name__}: {exc}")
            continue
        finally:
            watchdog.cancel()
            conn.close()
        if 200 <= status < 300:
            return AttemptResult(True, status, None, False)
        return AttemptResult(
            False, status, f"receiver answered HTTP {status}", _is_retriable(status)
        )
    return AttemptResult(False, None, "; ".join(errors) or "no address to connect to", True)


def backoff_delay(attempt: int, base_sec: float, cap_sec: float = 3600.0) -> float:
    """Wait before attempt `attempt + 1` after `attempt` failures: base, 2x base, 4x base..."""
    return float(min(cap_sec, base_sec * 2 ** max(0, attempt - 1)))


def build_request(
    secret: str, event_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
        SIGNATURE_HEADER: sign(secret, body, ts),
    }


def deliver(
    url: str,
    secret: str,
    event_id: str,
    body: bytes,
    *,
    allow_private: bool,
    max_attempts: int,
    backoff_base_sec: float,
    timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    resolver: Resolver = _system_resolver,
) -> list[AttemptResult]:
    """Send one notification now, retrying in this thread; returns every attempt's result.

    The outbox sender (which survives restarts) schedules retries in the database instead; this
    is for callers that own their retry loop, such as tests and the CLI.
    """
    results: list[AttemptResult] = []
    for attempt in range(1, max_attempts + 1):
        try:
            # Resolved and checked again on every attempt: the first check was at job creation.
            dest = check_destination(url, allow_private=allow_private, resolver=resolver)
        except InvalidInput as exc:
            results.append(AttemptResult(False, None, exc.message, False))
            return results
        result = post_once(dest, body, build_request(secret, event_id, body), timeout=timeout)
        results.append(result)
        if result.ok or not result.retriable:
            return results
        if attempt < max_attempts:
            sleep(backoff_delay(attempt, backoff_base_sec))
    return results


def ensure_webhook_secret(session: Session, account: Account) -> str:
    """The account's signing secret, created on first use (the caller commits)."""
    if not account.webhook_secret:
        account.webhook_secret = new_webhook_secret()
        session.flush()
    return account.webhook_secret


class DeliveryDeadline(Exception):
    """The attempt's total deadline passed (raised where DNS was still resolving)."""


def _resolve_within(resolver: Resolver, host: str, port: int, seconds: float) -> list[str]:
    """`resolver(host, port)`, or DeliveryDeadline after `seconds`: getaddrinfo cannot be
    interrupted, so it runs in a thread of its own that is left to finish by itself."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["addresses"] = list(resolver(host, port))
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run, name="reframe-webhook-dns", daemon=True)
    thread.start()
    thread.join(max(0.0, seconds))
    if thread.is_alive():
        raise DeliveryDeadline(f"DNS for {host!r} gave no answer within the delivery deadline")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["addresses"]  # type: ignore[return-value]


@dataclass(frozen=True)
class _Claimed:
    id: str
    job_id: str | None
    url: str
    body: bytes
    secret: str
    attempt: int


class WebhookSender:
    """Drains the webhook outbox; run `run_once()` in a loop (the dispatcher does).

    A row is claimed by pushing its `next_attempt_at` past the attempt's worst-case duration in
    a short transaction, and the HTTP request is made outside any transaction, so a slow
    receiver never holds a database lock, and a sender that dies mid-request only delays the
    row until that claim runs out.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        allow_private: bool,
        max_attempts: int,
        backoff_base_sec: float,
        timeout_sec: float = 5.0,
        deadline_sec: float | None = None,
        workers: int = 4,
        resolver: Resolver = _system_resolver,
    ) -> None:
        self.sessions = sessions
        self.allow_private = allow_private
        self.max_attempts = max_attempts
        self.backoff_base_sec = backoff_base_sec
        self.timeout_sec = timeout_sec
        # One attempt, DNS to the last byte of the answer, whatever the receiver does.
        self.deadline_sec = deadline_sec if deadline_sec is not None else 3 * timeout_sec
        self.workers = max(1, workers)
        self.resolver = resolver

    @classmethod
    def from_settings(cls, sessions: sessionmaker[Session], settings: Settings) -> WebhookSender:
        return cls(
            sessions,
            allow_private=settings.webhook_allow_private,
            max_attempts=settings.webhook_max_attempts,
            backoff_base_sec=settings.webhook_backoff_base_sec,
            timeout_sec=settings.webhook_timeout_sec,
            deadline_sec=settings.webhook_deadline_sec,
            workers=settings.webhook_workers,
        )

    def _claim(self, limit: int) -> list[_Claimed]:
        now = utcnow()
        # Past the attempt's deadline: a sender that died mid-attempt delays the row, no more.
        claim_until = now + timedelta(seconds=self.deadline_sec + 30)
        claimed: list[_Claimed] = []
        with self.sessions() as session:
            rows = session.scalars(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.next_attempt_at.is_not(None),
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                account = session.get(Account, row.account_id)
                if account is None:  # pragma: no cover - foreign key makes this impossible
                    continue
                secret = ensure_webhook_secret(session, account)
                row.attempts += 1
                row.next_attempt_at = claim_until
                body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
                claimed.append(_Claimed(row.id, row.job_id, row.url, body, secret, row.attempts))
            session.commit()
        return claimed

    def _settle(self, item: _Claimed, result: AttemptResult) -> None:
        with self.sessions() as session:
            row = session.get(WebhookDelivery, item.id)
            if row is None:  # pragma: no cover - rows are never deleted while pending
                return
            row.last_status = result.status
            row.last_error = result.error
            if result.ok:
                row.delivered_at = utcnow()
                row.next_attempt_at = None
            elif result.retriable and item.attempt < self.max_attempts:
                delay = backoff_delay(item.attempt, self.backoff_base_sec)
                row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            else:
                row.next_attempt_at = None  # given up; last_error says why
            session.commit()

    def attempt(self, item: _Claimed) -> AttemptResult:
        """One delivery attempt of a claimed row, settled; over within `deadline_sec`."""
        end = time.monotonic() + self.deadline_sec
        try:
            dest = check_destination(
                item.url,
                allow_private=self.allow_private,
                resolver=lambda host, port: _resolve_within(
                    self.resolver, host, port, end - time.monotonic()
                ),
            )
        except InvalidInput as exc:
            # DNS may change between acceptance and delivery; a private answer now is final.
            result = AttemptResult(False, None, exc.message, False)
        except DeliveryDeadline as exc:
            result = AttemptResult(False, None, str(exc), True)
        else:
            result = post_once(
                dest,
                item.body,
                build_request(item.secret, item.id, item.body),
                timeout=self.timeout_sec,
                deadline=end,
            )
        self._settle(item, result)
        return result

    def run_once(self, limit: int = 20) -> int:
        """Make one attempt for each due notification (up to `limit`), one after another, in
        this thread; returns how many. The service delivers with `WebhookPool` instead."""
        claimed = self._claim(limit)
        for item in claimed:
            self.attempt(item)
        return len(claimed)


class WebhookPool:
    """Delivers the outbox on threads of its own, so that no receiver slows the dispatcher.

    A feeder claims a round of due rows (at most a few per worker, so memory stays bounded),
    hands each job's rows to one worker (a job's notifications keep their order), and claims
    the next round when this one is over; each attempt ends by the sender's deadline, so a
    round does too. Rows still claimed at `stop()` are delivered after their claim runs out,
    by this service or another one.
    """

    def __init__(self, sender: WebhookSender, *, poll_sec: float) -> None:
        self.sender = sender
        self.poll_sec = poll_sec
        self._stop = threading.Event()
        self._queue: queue.Queue[list[_Claimed]] = queue.Queue()
        self._threads: list[threading.Thread] = []

    def start(self) -> WebhookPool:
        names = ["reframe-webhook-feeder"] + [
            f"reframe-webhook-{i}" for i in range(self.sender.workers)
        ]
        targets = [self._feed] + [self._work] * self.sender.workers
        for name, target in zip(names, targets, strict=True):
            # Daemons: a receiver still trickling when the service stops must not keep the
            # process alive (its row is claimed and will be retried).
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 1.0) -> None:
        # Short: a worker inside a slow attempt is a daemon and its row stays claimed, so the
        # service's stop (10 s promised to operators) does not wait for a receiver.
        self._stop.set()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def _feed(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.sender._claim(4 * self.sender.workers)
            except Exception:
                log.exception("claiming webhook deliveries failed; retrying")
                claimed = []
            if not claimed:
                self._stop.wait(self.poll_sec)
                continue
            by_job: dict[str, list[_Claimed]] = {}
            for item in claimed:
                by_job.setdefault(item.job_id or item.id, []).append(item)
            for items in by_job.values():
                self._queue.put(items)
            while self._queue.unfinished_tasks and not self._stop.wait(0.05):
                pass

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                items = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                for item in items:
                    if self._stop.is_set():
                        break
                    self.sender.attempt(item)
            except Exception:
                log.exception("a webhook delivery failed unexpectedly; it is retried later")
            finally:
                self._queue.task_done()
