"""Authorization, route by route, from the app's own route table.

Every route the app serves is either on the explicit public list below (with why it needs no
key) or is checked here: without credentials it is a 401; account A using account B's ids (in
the path and in the body, one slot at a time and all at once, with A's API key and with A's
studio session) gets 403 or 404 and changes nothing (every table row and every stored object
is compared before and after); and the same request with A's own ids is accepted, so the
refusals above are about ownership and not a malformed request. A new route, or a new path
parameter or id field, that this suite does not know fails it until someone says how it is
protected.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from sqlalchemy import select

from reframe.db.base import Base
from reframe.services import web_auth
from tests.fixtures.app import ApiFactory, ApiHarness, auth, finish_with_output

# (method, path) that need no API key, and why.
PUBLIC: dict[tuple[str, str], str] = {
    **{
        (method, path): "the published schema and its interactive docs"
        for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
        for method in ("GET", "HEAD")  # Starlette routes answer HEAD with their GET
    },
    ("GET", "/healthz"): "liveness probe",
    ("GET", "/metrics"): "operator scrape: open only on a private development install; "
    "REFRAME_METRICS_TOKEN, or a refusal, everywhere else (tests/api/test_observability.py)",
    ("GET", "/pricing/config"): "public tariff (reference: public endpoint)",
    ("POST", "/pricing/estimate"): "public estimate (reference: public endpoint)",
    ("GET", "/share/{token}"): "the unguessable share token is the credential",
    ("GET", "/s/{token}"): "the share page; the token is the credential",
    ("PUT", "/storage/{key:path}"): "signed URL: the HMAC signature is the credential",
    ("GET", "/storage/{key:path}"): "signed URL: the HMAC signature is the credential",
    ("HEAD", "/storage/{key:path}"): "signed URL: the HMAC signature is the credential",
    ("GET", "/"): "studio landing page",
    ("GET", "/signup"): "studio sign-up form",
    ("POST", "/signup"): "studio sign-up (CSRF-bound form)",
    ("GET", "/login"): "studio login form",
    ("POST", "/login"): "studio login (CSRF-bound form)",
    ("POST", "/logout"): "ends the caller's own session only",
    ("GET", "/static"): "the studio's CSS and JS",
}
# Studio pages: a session cookie, not a key. Without one they redirect to the login form.
STUDIO_PAGES = {("GET", "/studio"), ("GET", "/studio/projects/{project_id}")}

# Names of path parameters and body fields that refer to an account's resources.
ID_NAMES = ("job_id", "project_id", "file_id", "r2_key")


def all_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(method, path, route) for everything the app serves, documented or not."""
    found = []
    for ctx in iter_route_contexts(app.routes):
        methods = sorted(ctx.methods or {"GET"})  # a mount serves GET
        found += [(method, ctx.path, ctx.original_route) for method in methods]
    return found


def _body_model(route: Any) -> type[BaseModel] | None:
    if not isinstance(route, APIRoute) or route.body_field is None:
        return None
    model = route.body_field.field_info.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


@dataclass
class Owner:
    key: str
    account_id: str
    cookie: str
    csrf: str
    ids: dict[str, str] = field(default_factory=dict)


def _owner(api: ApiHarness, tmp_path: Path) -> Owner:
    account_id, key = api.create_account(free=200)
    up = api.upload(key, frames=24, fps=24)
    est = api.client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": up["key"], "target_fps_options": [60]},
    )
    assert est.status_code == 200, est.text
    done = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 60},
    ).json()["job_id"]
    output_id = finish_with_output(api, done)
    queued = api.client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": up["key"], "project_id": up["project_id"], "target_fps": 120},
    ).json()["job_id"]
    assert api.client.post(f"/projects/{up['project_id']}/share", headers=auth(key)).is_success
    project = api.client.get(f"/projects/{up['project_id']}", headers=auth(key)).json()
    with api.db.session() as s:
        from reframe.db.models import Account

        account = s.get(Account, account_id)
        assert account is not None
        cookie = web_auth.start_session(s, account)
        s.commit()
    return Owner(
        key=key,
        account_id=account_id,
        cookie=cookie,
        csrf=web_auth.csrf_token(api.settings.secret_key, cookie),
        ids={
            "project_id": up["project_id"],
            "r2_key": up["key"],
            "file_id": project["inputs"][0]["file_id"],
            "output_file_id": output_id,
            "job_id": queued,
            "done_job_id": done,
        },
    )


def snapshot(api: ApiHarness) -> dict[str, Any]:
    """Every row of every table, and every stored object, as comparable values."""
    state: dict[str, Any] = {}
    with api.db.session() as s:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if (table.name, c.name) not in _USAGE_COLUMNS]
            rows = s.execute(select(*columns).order_by(*table.primary_key.columns)).all()
            state[table.name] = [tuple(r) for r in rows]
    root = api.settings.resolved_storage_dir
    state["storage"] = sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    )
    return state


# Written when a key authenticates a request: the caller's own key, not a change to anything.
_USAGE_COLUMNS = {("api_keys", "last_used_at")}


@dataclass
class Call:
    method: str
    path: str
    json: dict[str, Any] | None


def _call(method: str, path: str, route: Any, ids: dict[str, str]) -> Call:
    url = path
    for name in _path_params(path):
        url = url.replace("{" + name + "}", ids[name])
    model = _body_model(route)
    body = None
    if model is not None:
        extra = model.model_config.get("json_schema_extra")
        assert isinstance(extra, dict)
        body = dict(extra["examples"][0])  # type: ignore[index, arg-type, call-overload]
        body.update({name: ids[name] for name in _body_ids(model)})
        if "target_fps" in body:
            body["target_fps"] = 60
    return Call(method, url, body)


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _body_ids(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name in ID_NAMES]


def _id_slots(path: str, route: Any) -> list[str]:
    model = _body_model(route)
    return _path_params(path) + (_body_ids(model) if model else [])


def protected_routes(app: Any) -> list[tuple[str, str, Any]]:
    return [
        (method, path, route)
        for method, path, route in all_routes(app)
        if (method, path) not in PUBLIC and (method, path) not in STUDIO_PAGES
    ]


@pytest.fixture
def world(api_factory: ApiFactory, tmp_path: Path) -> tuple[ApiHarness, Owner, Owner]:
    # Rate limits off: this suite sends a few hundred requests from one key on purpose.
    api = api_factory(rate_limit_read_per_sec=0, rate_limit_write_per_sec=0)
    return api, _owner(api, tmp_path), _owner(api, tmp_path)


def test_every_route_is_public_by_decision_or_checked_here(
    world: tuple[ApiHarness, Owner, Owner],
) -> None:
    api, _, _ = world
    served = {(m, p) for m, p, _ in all_routes(api.app)}
    assert set(PUBLIC) <= served, f"stale public entries: {set(PUBLIC) - served}"
    assert served >= STUDIO_PAGES
    unknown = []
    for method, path, route in protected_routes(api.app):
        for name in _path_params(path):
            if name not in ID_NAMES:
                unknown.append(f"{method} {path}: path parameter {name!r}")
        model = _body_model(route)
        for name in model.model_fields if model else ():
            if name.endswith(("_id", "_key", "_token")) and name not in ID_NAMES:
                unknown.append(f"{method} {path}: body field {name!r}")
    assert not unknown, "teach this suite what these refer to: " + "; ".join(unknown)
    with_ids = {(m, p) for m, p, r in protected_routes(api.app) if _id_slots(p, r)}
    # The routes of the issue, as a floor: finding fewer means discovery broke.
    assert {
        ("GET", "/jobs/{job_id}"),
        ("POST", "/jobs/{job_id}/cancel"),
        ("POST", "/jobs"),
        ("POST", "/pricing/estimate-video"),
        ("GET", "/projects/{project_id}"),
        ("GET", "/projects/{project_id}/files/{file_id}/download"),
        ("POST", "/projects/{project_id}/share"),
        ("DELETE", "/projects/{project_id}/share"),
    } <= with_ids


def test_without_credentials_every_protected_route_is_401(
    world: tuple[ApiHarness, Owner, Owner],
) -> None:
    api, _, b = world
    failures = []
    for method, path, route in protected_routes(api.app):
        call = _call(method, path, route, b.ids)
        before = snapshot(api)
        for headers in ({}, auth("rf_live_" + "x" * 43)):
            resp = api.client.request(call.method, call.path, json=call.json, headers=headers)
            if resp.status_code != 401 or "detail" not in resp.json():
                failures.append(f"{method} {path} {headers}: {resp.status_code}")
        if snapshot(api) != before:
            failures.append(f"{method} {path}: changed state without credentials")
    assert not failures, "\n".join(failures)


def _as(owner: Owner, how: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, cookies) that authenticate as `owner` with an API key or a studio session."""
    if how == "key":
        return auth(owner.key), {}
    return {web_auth.CSRF_HEADER: owner.csrf}, {web_auth.SESSION_COOKIE: owner.cookie}


@pytest.mark.parametrize("how", ["key", "session"])
def test_another_accounts_ids_are_refused_without_side_effects(
    world: tuple[ApiHarness, Owner, Owner], how: str
) -> None:
    api, a, b = world
    headers, cookies = _as(a, how)
    api.client.cookies.clear()
    for name, value in cookies.items():
        api.client.cookies.set(name, value)
    failures = []
    checked = 0
    for method, path, route in protected_routes(api.app):
        slots = _id_slots(path, route)
        # One foreign id at a time (the others A's own), then all of them at once.
        variants = [{**a.ids, slot: b.ids[slot]} for slot in slots]
        variants += [b.ids] if len(slots) > 1 else []
        for ids in variants:
            call = _call(method, path, route, ids)
            before = snapshot(api)
            resp = api.client.request(call.method, call.path, json=call.json, headers=headers)
            checked += 1
            if resp.status_code not in (403, 404):
                failures.append(f"{method} {call.path} {call.json}: {resp.status_code}")
            if snapshot(api) != before:
                failures.append(f"{method} {call.path} {call.json}: changed state")
        if not slots and method == "GET":
            # A listing or a profile: nothing of B's may show up in A's answer.
            resp = api.client.request(method, path, headers=headers)
            leaked = [v for v in b.ids.values() if v in resp.text]
            if resp.status_code != 200 or leaked:
                failures.append(f"{method} {path}: {resp.status_code}, leaks {leaked}")
    assert checked >= 10
    assert not failures, "\n".join(failures)


def test_the_same_requests_with_own_ids_are_accepted(
    world: tuple[ApiHarness, Owner, Owner],
) -> None:
    # The control for the test above: its 403/404s are about ownership, not a bad request.
    api, a, _ = world
    failures = []
    order = sorted(protected_routes(api.app), key=lambda r: r[0] == "DELETE")  # revoke last
    for method, path, route in order:
        if not _id_slots(path, route):
            continue
        call = _call(method, path, route, a.ids)
        resp = api.client.request(call.method, call.path, json=call.json, headers=auth(a.key))
        if not resp.is_success:
            failures.append(f"{method} {call.path}: {resp.status_code} {resp.text[:200]}")
    assert not failures, "\n".join(failures)


def test_studio_pages_need_a_session_and_check_ownership(
    world: tuple[ApiHarness, Owner, Owner],
) -> None:
    api, a, b = world
    api.client.cookies.clear()
    for _, path in STUDIO_PAGES:
        url = path.replace("{project_id}", b.ids["project_id"])
        anonymous = api.client.get(url, follow_redirects=False)
        assert anonymous.status_code == 303, url
        assert anonymous.headers["location"].startswith("/login")
    api.client.cookies.set(web_auth.SESSION_COOKIE, a.cookie)
    foreign = api.client.get(f"/studio/projects/{b.ids['project_id']}", follow_redirects=False)
    assert foreign.status_code == 403
    assert b.ids["r2_key"] not in foreign.text
    own = api.client.get(f"/studio/projects/{a.ids['project_id']}", follow_redirects=False)
    assert own.status_code == 200


def test_ids_of_the_issue_are_covered_in_bodies(world: tuple[ApiHarness, Owner, Owner]) -> None:
    # r2_key in estimate-video and jobs, project_id in jobs: the body slots really are probed.
    api, _, _ = world
    slots = {(m, p): _id_slots(p, r) for m, p, r in protected_routes(api.app)}
    assert typing.cast(list[str], slots[("POST", "/jobs")]) == ["r2_key", "project_id"]
    assert slots[("POST", "/pricing/estimate-video")] == ["r2_key"]
