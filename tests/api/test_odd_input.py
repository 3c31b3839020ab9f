"""Input no real client sends but an attacker or a fuzzer does: a 4xx, never a 500.

Found by the schema fuzzer (tests/api/test_schema_fuzz.py, bench/fuzz.py) and kept here as
plain regression tests on both databases: an OFFSET past what the database's integers hold,
and NUL characters, which PostgreSQL cannot hold in text at all, in ids, keys and names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.app import ApiHarness, auth


@pytest.fixture
def client(api: ApiHarness) -> Iterator[TestClient]:
    with TestClient(api.app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("path", ["/jobs", "/projects"])
@pytest.mark.parametrize("offset", [2**63, 10**30])
def test_an_offset_beyond_any_page_is_a_400(
    api: ApiHarness, client: TestClient, path: str, offset: int
) -> None:
    _, key = api.create_account()
    resp = client.get(f"{path}?offset={offset}", headers=auth(key))
    assert resp.status_code == 400, resp.text
    assert "offset" in resp.json()["detail"]


def test_the_largest_offset_allowed_still_answers(api: ApiHarness, client: TestClient) -> None:
    _, key = api.create_account()
    resp = client.get(f"/jobs?offset={2**31 - 1}", headers=auth(key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["items"] == []


NUL = "\x00"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/jobs/a{NUL}b"),
        ("POST", f"/jobs/a{NUL}b/cancel"),
        ("GET", f"/projects/a{NUL}b"),
        ("GET", f"/projects/a{NUL}b/files/c{NUL}d/download"),
        ("POST", f"/projects/a{NUL}b/share"),
        ("DELETE", f"/projects/a{NUL}b/share"),
        ("GET", f"/share/a{NUL}b"),
    ],
)
def test_nul_in_an_id_is_not_found(
    api: ApiHarness, client: TestClient, method: str, path: str
) -> None:
    _, key = api.create_account()
    resp = client.request(method, path.replace(NUL, "%00"), headers=auth(key))
    assert resp.status_code == 404, resp.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/upload/presign", {"filename": f"a{NUL}.mp4", "content_type": "video/mp4"}, "filename"),
        ("/upload/presign", {"filename": "a.mp4", "content_type": f"video/mp4{NUL}"}, "content"),
        ("/pricing/estimate-video", {"r2_key": f"k{NUL}", "target_fps_options": [60]}, "r2_key"),
        ("/jobs", {"r2_key": f"k{NUL}", "project_id": "p", "target_fps": 60}, "r2_key"),
        ("/jobs", {"r2_key": "k", "project_id": f"p{NUL}", "target_fps": 60}, "project_id"),
        (
            "/jobs",
            {"r2_key": "k", "project_id": "p", "target_fps": 60, "webhook_url": f"https://a{NUL}b"},
            "webhook_url",
        ),
    ],
)
def test_nul_in_a_body_string_is_a_400_naming_it(
    api: ApiHarness, client: TestClient, path: str, body: dict[str, object], field: str
) -> None:
    _, key = api.create_account()
    resp = client.post(path, json=body, headers=auth(key))
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["detail"]


@pytest.mark.parametrize("value", [True, "60", 60.5])
def test_numbers_must_be_numbers(api: ApiHarness, client: TestClient, value: object) -> None:
    # JSON `true` and `"60"` were quietly read as 1 and 60 (pydantic's lax mode).
    resp = client.post(
        "/pricing/estimate",
        json={"duration_sec": 2, "source_fps": 24, "target_fps_options": [value]},
    )
    assert resp.status_code == 400, resp.text
    assert "target_fps_options" in resp.json()["detail"]
