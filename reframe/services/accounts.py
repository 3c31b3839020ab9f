"""Accounts and API keys.

A key is `rf_live_` + 43 url-safe characters (32 random bytes). The database keeps only its
sha256 and a display prefix; sha256 without a salt is enough because the key itself carries
256 bits of entropy, so there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import Account, ApiKey, CreditPool, LedgerReason
from reframe.db.session import lock_account
from reframe.errors import AccountDisabled, Conflict, InvalidInput, NotFound, Unauthorized
from reframe.services import audit, ledger

log = logging.getLogger(__name__)

KEY_PREFIX = "rf_live_"
KEY_RANDOM_BYTES = 32
# `rf_live_` plus 8 characters (48 bits): enough to show the owner which key it is and to
# narrow the lookup to one row, while revealing nothing useful about the rest.
DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 8
# Writing last_used_at on every request would turn every read into a write; a minute's
# resolution is all the owner needs to spot an unused or stolen key.
LAST_USED_RESOLUTION_SEC = 60.0

_MISSING_KEY = "Missing API key: send 'Authorization: Bearer <your_api_key>'."
_INVALID_KEY = (
    "Invalid API key: it was revoked or never existed. Create a new one with POST /me/api-key "
    "or `reframe accounts create`."
)

# Said instead of _INVALID_KEY for a key of a closed account: a new key would not help.
_CLOSED = (
    "This API key belonged to an account that was closed (DELETE /me): it no longer works and "
    "the account cannot be opened again. Sign up for a new account to use the API."
)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly minted key: `plaintext` is shown once and never stored."""

    plaintext: str
    record: ApiKey


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def normalize_email(email: str) -> str:
    cleaned = email.strip().lower()
    local, _, domain = cleaned.partition("@")
    if not local or "." not in domain or " " in cleaned or len(cleaned) > 320:
        raise InvalidInput(f"{email!r} is not a valid email address")
    return cleaned


# Domain separation: the secret key signs other things too (share tokens, sessions).
_DIGEST_LABEL = b"reframe.closed-account-email\0"


def email_digest(settings: Settings, address: str) -> str:
    """A keyed digest of a normalized email, kept when an account is closed.

    Keyed (HMAC with the service's secret) rather than a bare hash: emails are guessable, and a
    bare sha256 of one would undo the erasure for anyone holding a list of addresses. Rotating
    REFRAME_SECRET_KEY forgets the closed addresses (their owners could claim the gift again).
    """
    message = _DIGEST_LABEL + address.encode()
    return hmac.new(settings.secret_key.encode(), message, hashlib.sha256).hexdigest()


def had_closed_account(session: Session, settings: Settings, address: str) -> bool:
    digest = email_digest(settings, address)
    found = session.scalar(select(Account.id).where(Account.closed_email_digest == digest).limit(1))
    return found is not None


def _mint_key(session: Session, account_id: str) -> IssuedKey:
    plaintext = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    record = ApiKey(
        account_id=account_id,
        prefix=plaintext[:DISPLAY_PREFIX_LEN],
        key_hash=hash_key(plaintext),
    )
    session.add(record)
    session.flush()
    return IssuedKey(plaintext=plaintext, record=record)


def create_account(
    session: Session, settings: Settings, email: str, *, free_xeconds: int | None = None
) -> tuple[Account, IssuedKey]:
    """A new account with its first API key and its signup gift of free xeconds.

    The gift is once per address: an address whose earlier account was closed (DELETE /me) may
    sign up again, without a second gift, or closing and signing up would mint free xeconds
    without end. `free_xeconds` (an operator's explicit amount) is given as asked.
    """
    address = normalize_email(email)
    if session.scalar(select(Account.id).where(Account.email == address)) is not None:
        raise Conflict(f"an account with email {address} already exists")
    # The digest is looked up after the address: a closure commits both at once, so a signup
    # racing it either finds the address still taken (Conflict) or finds the digest too.
    if free_xeconds is not None:
        gift = free_xeconds
    elif had_closed_account(session, settings, address):
        gift = 0
        log.info("signup gift withheld: this address had an account that was closed")
    else:
        gift = settings.free_xeconds_on_signup
    if gift < 0:
        raise InvalidInput(f"free xeconds cannot be negative; got {gift}")
    account = Account(email=address)
    session.add(account)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create with the same email
        raise Conflict(f"an account with email {address} already exists") from exc
    if gift:
        ledger.grant(
            session, account.id, gift, CreditPool.FREE, reason=LedgerReason.SIGNUP, note="signup"
        )
    return account, _mint_key(session, account.id)


def get_by_email(session: Session, email: str) -> Account:
    address = normalize_email(email)
    account = session.scalar(select(Account).where(Account.email == address))
    if account is None:
        raise NotFound(f"no account with email {address}; create it with `reframe accounts create`")
    return account


def list_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.created_at, Account.email)))


def active_key(session: Session, account_id: str) -> ApiKey | None:
    return session.scalar(
        select(ApiKey)
        .where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc())
        .limit(1)
    )


def rotate_key(session: Session, account_id: str) -> IssuedKey:
    """Revoke every live key of the account and mint one new key, in one transaction.

    The transaction starts with the account lock (reframe.db.session.lock_account), so the
    caller must not be inside one. Without it, two rotations at once on PostgreSQL each read
    the same old key, each revoke only that, and both new keys stay live.
    """
    lock_account(session, account_id)
    now = utcnow()
    for key in session.scalars(
        select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    ):
        key.revoked_at = now
    return _mint_key(session, account_id)


def _looks_like_a_key(plaintext: str) -> bool:
    return plaintext.startswith(KEY_PREFIX) and len(plaintext) >= DISPLAY_PREFIX_LEN + 16


def _matching_key(session: Session, plaintext: str) -> ApiKey | None:
    presented = hash_key(plaintext)
    # The account rides along in the same query: this runs on every request, polls included.
    candidates = session.scalars(
        select(ApiKey)
        .options(joinedload(ApiKey.account))
        .where(ApiKey.prefix == plaintext[:DISPLAY_PREFIX_LEN])
    ).all()
    match: ApiKey | None = None
    for candidate in candidates:
        # compare_digest: the time taken does not reveal how much of the hash matched.
        if hmac.compare_digest(candidate.key_hash, presented):
            match = candidate
    return match


def key_owner(session: Session, plaintext: str) -> str | None:
    """The account id of the live key `plaintext`, or None; reads only (the rate limiter's
    question, asked before the route authenticates for real)."""
    if not _looks_like_a_key(plaintext):
        return None
    match = _matching_key(session, plaintext)
    if match is None or match.revoked_at is not None:
        return None
    return match.account_id


def authenticate(
    session: Session, plaintext: str | None, *, now: datetime | None = None
) -> Account:
    """The account owning the live key `plaintext`, or Unauthorized (401)."""
    if not plaintext:
        raise Unauthorized(_MISSING_KEY)
    if not _looks_like_a_key(plaintext):
        raise Unauthorized(_INVALID_KEY)
    match = _matching_key(session, plaintext)
    if match is not None and match.account is not None and match.account.closed_at is not None:
        raise Unauthorized(_CLOSED)
    if match is None or match.revoked_at is not None:
        raise Unauthorized(_INVALID_KEY)
    account = match.account
    if account is None:
        raise Unauthorized(_INVALID_KEY)
    if account.disabled:
        # A valid key of a disabled account: the caller is known and refused (403), which
        # tells them that a new key would not help.
        raise AccountDisabled()
    moment = now or utcnow()
    last = match.last_used_at
    if last is None or (moment - last).total_seconds() >= LAST_USED_RESOLUTION_SEC:
        match.last_used_at = moment
    return account


def set_disabled(
    session: Session, account_id: str, disabled: bool, *, operator: str, reason: str
) -> bool:
    """Disable or enable an account (an operator action), audited; False when it already was.

    Starts and commits its own transaction under the account's lock, so two operators doing
    the same at once record one change. The account's keys and sessions are kept: they are
    refused while it is disabled (403) and work again once it is enabled.
    """
    reason = audit.check_reason(reason)
    if session.in_transaction():
        session.commit()
    try:
        account = lock_account(session, account_id)
        if account.disabled == disabled:
            session.rollback()
            return False
        account.disabled = disabled
        audit.record(
            session,
            operator=operator,
            action="account.disable" if disabled else "account.enable",
            reason=reason,
            account_id=account.id,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return True
