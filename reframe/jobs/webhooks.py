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
import http.client
import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reframe.db.base import utcnow
from reframe.db.models import Account, WebhookDelivery
from reframe.errors import InvalidInput
from reframe.services.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    USER_AGENT,
    Destination,
    Resolver,
    check_destination,
    ensure_webhook_secret,
    sign,
    system_resolver,
)

if TYPE_CHECKING:
    from reframe.config import Settings

log = logging.getLogger(__name__)


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
    resolver: Resolver = system_resolver,
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
        resolver: Resolver = system_resolver,
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
