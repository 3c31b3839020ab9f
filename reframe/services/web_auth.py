"""Studio sign-in: passwords, server-side sessions and CSRF tokens.

API clients authenticate with keys (reframe.services.accounts); people in a browser sign in with
an email and password and then carry a session cookie. Both resolve to the same `Account`, so
the studio spends the same balance through the same services as the API.

- Passwords are hashed with Argon2id (argon2-cffi's defaults, re-hashed when they change).
- A session is a random token in an HttpOnly cookie; only its SHA-256 is stored, so a copy of
  the database cannot be replayed as logins. Logging out deletes the row.
- CSRF: each unsafe request carries a token derived with HMAC from the session token (or, before
  sign-in, from a random pre-session cookie). A cross-site page can neither read the cookie nor
  the page holding the token, so it cannot forge the pair.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from reframe.db.base import utcnow
from reframe.db.models import Account, ApiKey, WebSession
from reframe.errors import (
    AccountDisabled,
    Conflict,
    Forbidden,
    InvalidInput,
    RateLimited,
    Unauthorized,
)
from reframe.services import accounts

if TYPE_CHECKING:
    from argon2 import PasswordHasher
    from sqlalchemy.orm import Session

    from reframe.config import Settings
    from reframe.jobs.ratelimit import LoginThrottle

SESSION_COOKIE = "reframe_session"
PRESESSION_COOKIE = "reframe_presession"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SESSION_TTL = timedelta(days=14)

MIN_PASSWORD_LENGTH = 10
# Argon2 cost grows with input length only a little, but an unbounded body is still a cheap way
# to make the server hash megabytes; no real password is this long.
MAX_PASSWORD_LENGTH = 512

_CSRF_CONTEXT = b"reframe/csrf/v1"

_hasher: PasswordHasher | None = None
_dummy_hash: str | None = None


def _password_hasher() -> PasswordHasher:
    # Built on first use, not at import: constructing it is cheap but importing argon2 is not
    # needed by processes that never see a password (render workers, the CLI's other commands).
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"Use a password of at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"Use a password of at most {MAX_PASSWORD_LENGTH} characters.")


def hash_password(password: str) -> str:
    return _password_hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_password_hasher().verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def _spend_equal_time(password: str) -> None:
    # Verifying against a throwaway hash when the email is unknown keeps "no such account" as
    # slow as "wrong password", so response times do not reveal which emails have accounts.
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(secrets.token_urlsafe(16))
    verify_password(_dummy_hash, password)


def find_account_by_email(db: Session, normalized_email: str) -> Account | None:
    return db.execute(select(Account).where(Account.email == normalized_email)).scalar_one_or_none()


def set_password(db: Session, account: Account, password: str) -> None:
    """Give `account` a studio password (also how an operator-created account gets one)."""
    check_password_policy(password)
    account.password_hash = hash_password(password)
    db.flush()


def sign_up(db: Session, settings: Settings, email: str, password: str) -> Account:
    """A new account with a studio password and the usual signup gift, in the caller's
    transaction. It starts without a usable API key: the studio shows a key only when the person
    asks for one, and a key nobody has seen is one nobody can keep safe."""
    check_password_policy(password)
    try:
        account, _unseen_key = accounts.create_account(db, settings, email)
    except Conflict:
        # Saying so is unavoidable for sign-up (the address must be unique); the login form
        # stays uniform instead.
        raise Conflict("An account with this email already exists. Log in instead.") from None
    except InvalidInput:
        raise InvalidInput("Enter a valid email address, like name@example.com.") from None
    now = utcnow()
    for key in db.scalars(
        select(ApiKey).where(ApiKey.account_id == account.id, ApiKey.revoked_at.is_(None))
    ):
        key.revoked_at = now
    account.password_hash = hash_password(password)
    db.flush()
    return account


def authenticate(
    db: Session, email: str, password: str, *, throttle: LoginThrottle | None = None
) -> Account:
    """The account for this email and password, or Unauthorized with one uniform message.

    With `throttle`, each attempt for the email first asks it for a turn (RateLimited, 429,
    when it must wait; the password is then not even checked), and a success resets it.
    """
    failure = Unauthorized("Email or password is incorrect.")
    try:
        normalized = accounts.normalize_email(email)
    except InvalidInput:
        _spend_equal_time(password)
        raise failure from None
    if throttle is not None:
        wait = throttle.attempt(normalized)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"Too many failed log-ins for this email. Try again in {seconds}s; after "
                "repeated failures each wait doubles, up to a few minutes.",
                retry_after=seconds,
            )
    account = _check_password(db, normalized, password, failure)
    if throttle is not None:
        throttle.succeeded(normalized)
    return account


def _check_password(db: Session, normalized: str, password: str, failure: Unauthorized) -> Account:
    if len(password) > MAX_PASSWORD_LENGTH:
        raise failure
    account = find_account_by_email(db, normalized)
    if account is None or account.password_hash is None:
        _spend_equal_time(password)
        raise failure
    if not verify_password(account.password_hash, password):
        raise failure
    if account.disabled:
        raise AccountDisabled()
    if _password_hasher().check_needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
        db.flush()
    return account


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(db: Session, account: Account, *, now: datetime | None = None) -> str:
    """Create a session for `account`; returns the raw token for the cookie (never stored)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    db.add(
        WebSession(
            account_id=account.id,
            token_hash=_token_hash(token),
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    # Expired rows of this account are cleaned up here rather than by a separate job.
    db.execute(
        delete(WebSession).where(WebSession.account_id == account.id, WebSession.expires_at <= now)
    )
    db.flush()
    return token


def resolve_session(db: Session, token: str, *, now: datetime | None = None) -> Account | None:
    """The signed-in account for a cookie token, or None when unknown or expired.

    Raises AccountDisabled (403) for a live session of a disabled account: the person is
    signed in and refused, which a redirect to the login page would not tell them.
    """
    if not token or len(token) > 128:
        return None
    now = now or utcnow()
    row = db.execute(
        select(WebSession).where(WebSession.token_hash == _token_hash(token))
    ).scalar_one_or_none()
    if row is None or row.expires_at <= now:
        return None
    account = db.get(Account, row.account_id)
    if account is None:
        return None
    if account.disabled:
        raise AccountDisabled()
    return account


def session_owner(db: Session, token: str, *, now: datetime | None = None) -> str | None:
    """The account id of a live session token, or None; reads only (for the rate limiter)."""
    if not token or len(token) > 128:
        return None
    now = now or utcnow()
    row = db.execute(
        select(WebSession.account_id, WebSession.expires_at).where(
            WebSession.token_hash == _token_hash(token)
        )
    ).one_or_none()
    if row is None or row.expires_at <= now:
        return None
    return str(row.account_id)


def end_session(db: Session, token: str) -> None:
    if token:
        db.execute(delete(WebSession).where(WebSession.token_hash == _token_hash(token)))
        db.flush()


def end_all_sessions(db: Session, account_id: str) -> None:
    db.execute(delete(WebSession).where(WebSession.account_id == account_id))
    db.flush()


def new_presession_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(secret_key: str, bound_to: str) -> str:
    """The CSRF token for a session (or pre-session) token. Deterministic, so every page and
    every JSON call of one session uses the same value without storing it."""
    key = hmac.new(secret_key.encode("utf-8"), _CSRF_CONTEXT, hashlib.sha256).digest()
    mac = hmac.new(key, bound_to.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def csrf_matches(secret_key: str, bound_to: str | None, presented: str | None) -> bool:
    if not bound_to or not presented:
        return False
    return hmac.compare_digest(csrf_token(secret_key, bound_to), presented)


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def account_from_cookie(
    db: Session,
    secret_key: str,
    *,
    session_token: str | None,
    method: str,
    csrf_header: str | None,
) -> Account | None:
    """The studio's way into the JSON API: a session cookie instead of a bearer key.

    None when there is no valid session (the caller then asks for a key as usual). For unsafe
    methods the CSRF header must match the session, otherwise Forbidden: a cookie alone is
    exactly what a forged cross-site request would carry.
    """
    if not session_token:
        return None
    account = resolve_session(db, session_token)
    if account is None:
        return None
    if method.upper() not in _SAFE_METHODS and not csrf_matches(
        secret_key, session_token, csrf_header
    ):
        raise Forbidden(
            f"Missing or invalid {CSRF_HEADER} header for a studio session request. Reload the "
            "page and try again; API clients should send 'Authorization: Bearer <your_api_key>'."
        )
    return account
