"""The studio's HTML pages: sign up, log in, log out, the dashboard, a project, the share page.

Pages are thin: the dashboard and project pages load their data from the public JSON API in the
browser (same presign/estimate/jobs flow as any API client, authenticated by the session cookie
plus a CSRF header), so the studio cannot drift from what the API does. Only sign-in and the
public share page are rendered from services on the server.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from reframe.config import Settings
from reframe.db.models import Account
from reframe.errors import AccountDisabled, RateLimited, ReframeError
from reframe.services import ownership, web_auth
from reframe.web import share as share_view
from reframe.web.deps import DbDep, SettingsDep

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"

router = APIRouter(include_in_schema=False)


@cache
def templates() -> Jinja2Templates:
    # Built on first request rather than at import, like everything else in the package.
    env = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env.env.globals["static_url"] = _static_url
    return env


@cache
def _static_version() -> str:
    # A content-derived query string, so a new release is never served from a stale cache.
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _static_url(name: str) -> str:
    return f"/static/{name}?v={_static_version()}"


def _secure_cookies(settings: Settings) -> bool:
    return settings.public_base_url.lower().startswith("https://")


def _safe_next(value: str | None) -> str:
    # Only same-site paths: an open redirect after login is a phishing tool.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/studio"


def current_session_account(request: Request, db: Session) -> Account | None:
    """The signed-in account; raises AccountDisabled for a session of a disabled account."""
    token = request.cookies.get(web_auth.SESSION_COOKIE, "")
    return web_auth.resolve_session(db, token) if token else None


def _signed_in_or_none(request: Request, db: Session) -> Account | None:
    # The sign-in pages treat a disabled account's session as signed out: logging in again
    # then says why it is refused.
    try:
        return current_session_account(request, db)
    except AccountDisabled:
        return None


def _disabled_page(request: Request, exc: AccountDisabled) -> HTMLResponse:
    return _page(
        request,
        "error.html",
        {"account": None, "heading": "Account disabled", "message": exc.message},
        status_code=exc.status_code,
    )


def _page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    response = templates().TemplateResponse(request, name, context, status_code=status_code)
    # Pages carry CSRF tokens and account data: never cache them, never frame them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _signed_in_context(request: Request, account: Account, settings: Settings) -> dict[str, Any]:
    token = request.cookies.get(web_auth.SESSION_COOKIE, "")
    return {
        "account": account,
        "csrf_token": web_auth.csrf_token(settings.secret_key, token),
    }


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


# -- anonymous forms: a pre-session cookie binds the CSRF token ------------------------------


def _anonymous_form(
    request: Request,
    settings: Settings,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    pre = request.cookies.get(web_auth.PRESESSION_COOKIE) or web_auth.new_presession_token()
    context = {
        **context,
        "account": None,
        "csrf_token": web_auth.csrf_token(settings.secret_key, pre),
        "show_auth_links": True,
        "min_password": web_auth.MIN_PASSWORD_LENGTH,
        "free_xeconds": settings.free_xeconds_on_signup,
    }
    response = _page(request, template, context, status_code=status_code)
    response.set_cookie(
        web_auth.PRESESSION_COOKIE,
        pre,
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(settings),
        path="/",
    )
    return response


def _check_anonymous_csrf(request: Request, settings: Settings, presented: str) -> bool:
    pre = request.cookies.get(web_auth.PRESESSION_COOKIE)
    return web_auth.csrf_matches(settings.secret_key, pre, presented)


def _start_session_response(
    db: Session, settings: Settings, account: Account, next_url: str
) -> RedirectResponse:
    token = web_auth.start_session(db, account)
    db.commit()
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        web_auth.SESSION_COOKIE,
        token,
        max_age=int(web_auth.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(settings),
        path="/",
    )
    response.delete_cookie(web_auth.PRESESSION_COOKIE, path="/")
    return response


_SIGNUP = {"heading": "Create your account", "submit": "Sign up", "action": "/signup"}
_LOGIN = {"heading": "Log in", "submit": "Log in", "action": "/login"}
_EXPIRED_FORM = "This form expired. Please try again."


@router.get("/", response_class=HTMLResponse)
def home(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    if _signed_in_or_none(request, db) is not None:
        return RedirectResponse("/studio", status_code=303)
    return _page(request, "home.html", {"account": None, "show_auth_links": True})


@router.get("/signup", response_class=HTMLResponse)
def signup_form(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    if _signed_in_or_none(request, db) is not None:
        return RedirectResponse("/studio", status_code=303)
    return _anonymous_form(request, settings, "auth.html", {**_SIGNUP, "mode": "signup"})


@router.post("/signup", response_class=HTMLResponse)
def signup(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=web_auth.MAX_PASSWORD_LENGTH)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    context: dict[str, Any] = {**_SIGNUP, "mode": "signup", "email": email}
    if not _check_anonymous_csrf(request, settings, csrf_token):
        context["error"] = _EXPIRED_FORM
        return _anonymous_form(request, settings, "auth.html", context, status_code=403)
    try:
        account = web_auth.sign_up(db, settings, email, password)
    except ReframeError as exc:
        db.rollback()
        context["error"] = exc.message
        return _anonymous_form(request, settings, "auth.html", context, status_code=exc.status_code)
    return _start_session_response(db, settings, account, "/studio")


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, db: DbDep, settings: SettingsDep, next: str | None = None
) -> Response:
    if _signed_in_or_none(request, db) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    action = "/login" if next is None else f"/login?next={quote(_safe_next(next), safe='/')}"
    return _anonymous_form(
        request, settings, "auth.html", {**_LOGIN, "mode": "login", "action": action}
    )


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=web_auth.MAX_PASSWORD_LENGTH)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: str | None = None,
) -> Response:
    context: dict[str, Any] = {**_LOGIN, "mode": "login", "email": email}
    if next is not None:
        context["action"] = f"/login?next={quote(_safe_next(next), safe='/')}"
    if not _check_anonymous_csrf(request, settings, csrf_token):
        context["error"] = _EXPIRED_FORM
        return _anonymous_form(request, settings, "auth.html", context, status_code=403)
    try:
        account = web_auth.authenticate(
            db, email, password, throttle=request.app.state.login_throttle
        )
    except ReframeError as exc:
        db.rollback()
        context["error"] = exc.message
        page = _anonymous_form(request, settings, "auth.html", context, status_code=exc.status_code)
        if isinstance(exc, RateLimited):
            page.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return page
    return _start_session_response(db, settings, account, _safe_next(next))


@router.post("/logout")
def logout(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    token = request.cookies.get(web_auth.SESSION_COOKIE, "")
    # A forged logout is a nuisance, not a breach, but checking keeps the rule uniform: every
    # state-changing form carries a valid token.
    if token and not web_auth.csrf_matches(settings.secret_key, token, csrf_token):
        return _page(
            request,
            "error.html",
            {"account": None, "heading": "Log out failed", "message": _EXPIRED_FORM},
            status_code=403,
        )
    web_auth.end_session(db, token)
    db.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web_auth.SESSION_COOKIE, path="/")
    return response


@router.get("/studio", response_class=HTMLResponse)
def dashboard(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    try:
        account = current_session_account(request, db)
    except AccountDisabled as exc:
        return _disabled_page(request, exc)
    if account is None:
        return _login_redirect(request)
    return _page(request, "studio.html", _signed_in_context(request, account, settings))


@router.get("/studio/projects/{project_id}", response_class=HTMLResponse)
def project_page(project_id: str, request: Request, db: DbDep, settings: SettingsDep) -> Response:
    try:
        account = current_session_account(request, db)
    except AccountDisabled as exc:
        return _disabled_page(request, exc)
    if account is None:
        return _login_redirect(request)
    context = _signed_in_context(request, account, settings)
    try:
        ownership.owned_project(db, account, project_id)
    except ReframeError as exc:
        heading = "Not your project" if exc.status_code == 403 else "Project not found"
        return _page(
            request,
            "error.html",
            {**context, "heading": heading, "message": exc.message},
            status_code=exc.status_code,
        )
    return _page(request, "project.html", {**context, "project_id": project_id})


@router.get("/s/{token}", response_class=HTMLResponse)
def share_page(token: str, request: Request, db: DbDep, settings: SettingsDep) -> Response:
    storage = request.app.state.storage
    try:
        view = share_view.build(db, storage, settings, token)
    except ReframeError as exc:
        return _page(
            request,
            "error.html",
            {
                "account": None,
                "heading": "Link not available",
                "message": "This review link does not exist or was revoked by its owner.",
            },
            status_code=exc.status_code,
        )
    response = _page(request, "share.html", {"account": None, **view})
    # The page's URL is the secret: do not leak it to the sites its videos might link to.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
