"""Dependencies, as `Annotated` aliases so handlers read like their signatures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from reframe.config import Settings
from reframe.db.models import Account
from reframe.jobs.lifecycle import JobLifecycle
from reframe.services import accounts, web_auth
from reframe.services.pagination import Window
from reframe.storage.base import Storage

# auto_error=False: a missing header must produce our 401 body, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="Your API key: `Authorization: Bearer rf_live_...`",
)


# The two lookups below are `async def` only because they never block: FastAPI runs a plain
# `def` dependency in its thread pool, and on a polled route those hops cost more than the work.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_lifecycle(request: Request) -> JobLifecycle:
    lifecycle: JobLifecycle = request.app.state.lifecycle
    return lifecycle


# Largest OFFSET a page may ask for: what every database's integer OFFSET holds (a larger one
# overflowed SQLite and PostgreSQL into a 500), and far past any account's history.
MAX_PAGE_OFFSET = 2**31 - 1


async def page_window(
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 20,
    offset: Annotated[
        int, Query(ge=0, le=MAX_PAGE_OFFSET, description="Items to skip: a page's next_offset")
    ] = 0,
) -> Window:
    return Window(limit=limit, offset=offset)


_READ_METHODS = frozenset({"GET", "HEAD"})


@contextmanager
def request_session(request: Request) -> Iterator[Session]:
    """One session per request. Services commit what must persist; the rest is rolled back."""
    factory: sessionmaker[Session] = (
        request.app.state.read_sessionmaker
        if request.method in _READ_METHODS
        else request.app.state.sessionmaker
    )
    session = factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def get_session(request: Request) -> Iterator[Session]:
    with request_session(request) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
SessionDep = Annotated[Session, Depends(get_session)]
LifecycleDep = Annotated[JobLifecycle, Depends(get_lifecycle)]
PageDep = Annotated[Window, Depends(page_window)]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_current_account(request: Request, session: SessionDep, credentials: Credentials) -> Account:
    return authenticate_request(request, session, credentials)


def authenticate_request(
    request: Request, session: Session, credentials: HTTPAuthorizationCredentials | None
) -> Account:
    """Who is calling. The one place a request is authenticated (blocking: database reads).

    An API key when one is sent; otherwise the studio's session cookie (with its CSRF header on
    unsafe methods, see reframe.services.web_auth), so every protected route serves both.
    """
    token = credentials.credentials if credentials is not None else None
    if token is None:
        studio_account = web_auth.account_from_cookie(
            session,
            request.app.state.settings.secret_key,
            session_token=request.cookies.get(web_auth.SESSION_COOKIE),
            method=request.method,
            csrf_header=request.headers.get(web_auth.CSRF_HEADER),
        )
        if studio_account is not None:
            _commit_auth(request, session)
            return studio_account
    account = accounts.authenticate(session, token)
    # End the auth transaction now (it may have touched last_used_at) so that money-moving
    # services can open theirs with the account lock (reframe.db.session.lock_account). A read
    # that changed nothing goes on in the same transaction: one round trip less per poll.
    if request.method not in _READ_METHODS or session.dirty:
        _commit_auth(request, session)
    return account


def _commit_auth(request: Request, session: Session) -> None:
    try:
        session.commit()
    except OperationalError:
        if request.method not in _READ_METHODS:
            raise
        # A read request on SQLite records a key's last use without holding the write lock
        # and can lose that race to a concurrent writer; the next request records it.
        session.rollback()


CurrentAccount = Annotated[Account, Depends(get_current_account)]
