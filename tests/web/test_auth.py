"""Studio sign-up, log-in, log-out, session cookies and CSRF, through the real app."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from reframe.db.base import utcnow
from reframe.db.models import Account, LedgerEntry, LedgerReason, WebSession
from reframe.services import web_auth
from tests.fixtures.app import ApiHarness, auth, make_app, make_settings

PASSWORD = "correct horse battery"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = _CSRF_RE.search(page.text)
    assert match, "the form has no CSRF token"
    return match.group(1)


def sign_up(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Sign up through the form; returns the CSRF token of the new session's pages."""
    token = form_token(client, "/signup")
    resp = client.post(
        "/signup",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/studio"
    studio = client.get("/studio")
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', studio.text)
    assert match
    return match.group(1)


def test_sign_up_creates_account_with_argon2_hash_gift_and_no_key(api: ApiHarness) -> None:
    client = api.client
    token = form_token(client, "/signup")
    resp = client.post(
        "/signup",
        data={"email": "  New@Example.com ", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert resp.headers["location"] == "/studio"
    cookie = resp.headers["set-cookie"]
    assert f"{web_auth.SESSION_COOKIE}=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # http public URL: a Secure cookie would never come back

    with api.db.session() as session:
        account = session.query(Account).filter_by(email="new@example.com").one()
        assert account.password_hash is not None
        assert account.password_hash.startswith("$argon2id$")
        assert PASSWORD not in account.password_hash
        stored = session.query(WebSession).filter_by(account_id=account.id).one()
        # Only a hash of the cookie's token is stored.
        raw = client.cookies.get(web_auth.SESSION_COOKIE)
        assert raw
        assert stored.token_hash != raw
        assert len(stored.token_hash) == 64

    me = client.get("/me")
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["account"]["email"] == "new@example.com"
    assert body["balance"]["free_xeconds"] == api.settings.free_xeconds_on_signup
    assert body["api_key"] is None  # a key is shown only when the person asks for one


def test_sign_up_without_or_with_wrong_csrf_token_creates_nothing(api: ApiHarness) -> None:
    client = api.client
    form_token(client, "/signup")  # sets the pre-session cookie
    for token in ("", "forged-token"):
        resp = client.post(
            "/signup",
            data={"email": "x@example.com", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert resp.status_code == 403
        assert "form expired" in resp.text
    # A token is bound to the browser's own pre-session cookie: another browser's is useless.
    other = TestClient(api.app, base_url="http://testserver")
    stolen = form_token(other, "/signup")
    resp = client.post(
        "/signup",
        data={"email": "x@example.com", "password": PASSWORD, "csrf_token": stolen},
        follow_redirects=False,
    )
    assert resp.status_code == 403
    with api.db.session() as session:
        assert session.query(Account).filter_by(email="x@example.com").count() == 0


@pytest.mark.parametrize(
    ("email", "password", "status", "message"),
    [
        ("short@example.com", "short", 400, "at least 10 characters"),
        ("not-an-email", PASSWORD, 400, "valid email address"),
    ],
)
def test_sign_up_rejects_bad_input_with_a_clear_message(
    api: ApiHarness, email: str, password: str, status: int, message: str
) -> None:
    token = form_token(api.client, "/signup")
    resp = api.client.post(
        "/signup", data={"email": email, "password": password, "csrf_token": token}
    )
    assert resp.status_code == status
    assert message in resp.text
    assert 'role="alert"' in resp.text
    assert web_auth.SESSION_COOKIE not in api.client.cookies


def test_sign_up_with_a_taken_email_says_log_in(api: ApiHarness) -> None:
    api.create_account("taken@example.com")
    token = form_token(api.client, "/signup")
    resp = api.client.post(
        "/signup", data={"email": "taken@example.com", "password": PASSWORD, "csrf_token": token}
    )
    assert resp.status_code == 409
    assert "Log in instead" in resp.text


def test_login_success_wrong_password_and_unknown_email(api: ApiHarness) -> None:
    sign_up(api.client, "person@example.com")
    fresh = TestClient(api.app, base_url="http://testserver")

    messages = []
    for email, password in [
        ("person@example.com", "wrong password!!"),
        ("nobody@example.com", PASSWORD),
    ]:
        token = form_token(fresh, "/login")
        resp = fresh.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        assert resp.status_code == 401
        messages.append(re.search(r'role="alert"[^>]*>([^<]+)<', resp.text).group(1))  # type: ignore[union-attr]
    # The same words either way: the form does not reveal which emails have accounts.
    assert messages[0] == messages[1] == "Email or password is incorrect."

    token = form_token(fresh, "/login")
    resp = fresh.post(
        "/login?next=/studio/projects/abc",
        data={"email": "PERSON@example.com", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert resp.headers["location"] == "/studio/projects/abc"
    assert fresh.get("/me").json()["account"]["email"] == "person@example.com"


def test_login_refuses_accounts_without_a_password_and_open_redirects(api: ApiHarness) -> None:
    # An operator-created account (CLI) has a key but no password: no studio login with it.
    api.create_account("cli@example.com")
    token = form_token(api.client, "/login")
    resp = api.client.post(
        "/login", data={"email": "cli@example.com", "password": PASSWORD, "csrf_token": token}
    )
    assert resp.status_code == 401

    sign_up(TestClient(api.app, base_url="http://testserver"), "redirect@example.com")
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        client = TestClient(api.app, base_url="http://testserver")
        token = form_token(client, "/login")
        resp = client.post(
            "/login",
            params={"next": evil},
            data={"email": "redirect@example.com", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert resp.status_code == 303
        assert resp.headers["location"] == "/studio"


def test_session_cookie_authenticates_the_api_with_csrf_on_unsafe_methods(
    api: ApiHarness,
) -> None:
    client = api.client
    csrf = sign_up(client, "cookie@example.com")

    assert client.get("/me").status_code == 200
    # A cookie alone is what a forged cross-site request carries: refused for writes.
    refused = client.post("/me/api-key")
    assert refused.status_code == 403
    assert web_auth.CSRF_HEADER in refused.json()["detail"]
    wrong = client.post("/me/api-key", headers={web_auth.CSRF_HEADER: "x" * 43})
    assert wrong.status_code == 403

    issued = client.post("/me/api-key", headers={web_auth.CSRF_HEADER: csrf})
    assert issued.status_code == 200, issued.text
    key = issued.json()["api_key"]
    # The key it returns works on its own, like any API key.
    bare = TestClient(api.app, base_url="http://testserver")
    assert bare.get("/me", headers=auth(key)).json()["account"]["email"] == "cookie@example.com"
    assert bare.get("/me").status_code == 401

    # Another session's token does not work for this one.
    other_csrf = sign_up(TestClient(api.app, base_url="http://testserver"), "o@example.com")
    assert client.post("/me/api-key", headers={web_auth.CSRF_HEADER: other_csrf}).status_code == 403


def test_logout_ends_the_session_server_side(api: ApiHarness) -> None:
    client = api.client
    csrf = sign_up(client, "bye@example.com")
    raw = client.cookies.get(web_auth.SESSION_COOKIE)
    assert raw

    forged = client.post("/logout", data={"csrf_token": "nope"}, follow_redirects=False)
    assert forged.status_code == 403
    assert client.get("/me").status_code == 200

    resp = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login"
    assert client.get("/studio", follow_redirects=False).status_code == 303
    # Replaying the old cookie does not bring the session back: its row is gone.
    replay = TestClient(api.app, base_url="http://testserver")
    replay.cookies.set(web_auth.SESSION_COOKIE, raw)
    assert replay.get("/me").status_code == 401
    with api.db.session() as session:
        assert session.query(WebSession).count() == 0


def test_sessions_expire(api: ApiHarness) -> None:
    sign_up(api.client, "old@example.com")
    raw = api.client.cookies.get(web_auth.SESSION_COOKIE)
    assert raw
    with api.db.session() as session:
        assert web_auth.resolve_session(session, raw) is not None
        later = utcnow() + web_auth.SESSION_TTL + timedelta(seconds=1)
        assert web_auth.resolve_session(session, raw, now=later) is None


def test_cookies_are_secure_when_the_public_url_is_https(api: ApiHarness) -> None:
    settings = make_settings(
        api.tmp_path,
        api.db,
        public_base_url="https://studio.example.com",
        secret_key="a-long-random-production-secret-for-this-test-only-0123456789",
    )
    with TestClient(make_app(settings, api.db), base_url="https://testserver") as client:
        page = client.get("/signup")
        assert "Secure" in page.headers["set-cookie"]
        token = _CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        resp = client.post(
            "/signup",
            data={"email": "tls@example.com", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert resp.status_code == 303
        assert "Secure" in resp.headers["set-cookie"]
        assert "HttpOnly" in resp.headers["set-cookie"]


def test_closing_and_signing_up_again_does_not_mint_a_second_signup_gift(
    api: ApiHarness,
) -> None:
    """Attack: sign up (free xeconds), close the account (DELETE /me), sign up again with the
    same address, repeat. Each round would hand out a fresh gift for nothing."""
    gift = api.settings.free_xeconds_on_signup
    assert gift > 0
    client = api.client
    csrf = sign_up(client, "farmer@example.com")
    assert client.get("/me").json()["balance"]["free_xeconds"] == gift
    closed = client.delete("/me?confirm=farmer@example.com", headers={web_auth.CSRF_HEADER: csrf})
    assert closed.status_code == 204, closed.text

    # The address is free again (a person may come back), spelled any way they like...
    again = TestClient(api.app, base_url="http://testserver")
    sign_up(again, "  Farmer@EXAMPLE.com ")
    me = again.get("/me").json()
    assert me["account"]["email"] == "farmer@example.com"
    # ...but the gift was this address's once.
    assert me["balance"]["free_xeconds"] == 0
    assert me["balance"]["paid_xeconds"] == 0
    with api.db.session() as session:
        gifts = session.scalars(
            select(LedgerEntry).where(LedgerEntry.reason == LedgerReason.SIGNUP)
        ).all()
        assert len(gifts) == 1

    # Another address still gets its gift: only the returning one is refused.
    other = TestClient(api.app, base_url="http://testserver")
    sign_up(other, "newcomer@example.com")
    assert other.get("/me").json()["balance"]["free_xeconds"] == gift
