"""No secret reaches a log line: a whole workflow runs with every logger at DEBUG into the
service's JSON handler, and the captured lines are searched for the API key, the password,
the signatures of every signed URL, the share token and the secret key."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from reframe.logs import configure_logging
from tests.fixtures.app import ApiFactory, ApiHarness, auth
from tests.fixtures.media import make_clip
from tests.web.test_auth import form_token

SECRET_KEY = "test-secret-key-that-must-never-be-logged-0123456789"
PASSWORD = "my very private passphrase"


@pytest.fixture
def captured(api_factory: ApiFactory) -> Iterator[tuple[ApiHarness, io.StringIO]]:
    api = api_factory(secret_key=SECRET_KEY)
    stream = io.StringIO()
    handler = configure_logging(
        "api", fmt="json", level="DEBUG", secrets=api.settings.secret_values(), stream=stream
    )
    root = logging.getLogger()
    previous = root.level
    try:
        yield api, stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def signatures(url: str) -> list[str]:
    query = parse_qs(urlsplit(url).query)
    return [v for name in ("sig", "X-Amz-Signature") for v in query.get(name, [])]


def test_a_full_workflow_logs_no_secret(captured: tuple[ApiHarness, io.StringIO]) -> None:
    api, stream = captured
    client = api.client
    _, key = api.create_account("owner@example.com", free=30)
    secrets: dict[str, str] = {"api key": key, "secret key": SECRET_KEY}

    clip = make_clip(api.tmp_path / "clip.mp4", frames=24, fps=24)
    presign = client.post(
        "/upload/presign",
        headers=auth(key),
        json={"filename": "clip.mp4", "content_type": "video/mp4"},
    ).json()
    for i, sig in enumerate(signatures(presign["upload_url"])):
        secrets[f"upload sig {i}"] = sig
    put = client.put(
        presign["upload_url"], content=clip.read_bytes(), headers={"Content-Type": "video/mp4"}
    )
    assert put.status_code in (200, 201, 204), put.text
    estimate = client.post(
        "/pricing/estimate-video",
        headers=auth(key),
        json={"r2_key": presign["key"], "target_fps_options": [60]},
    )
    assert estimate.status_code == 200, estimate.text
    job = client.post(
        "/jobs",
        headers=auth(key),
        json={"r2_key": presign["key"], "project_id": presign["project_id"], "target_fps": 60},
    ).json()
    assert client.get(f"/jobs/{job['job_id']}", headers=auth(key)).status_code == 200

    project = client.get(f"/projects/{presign['project_id']}", headers=auth(key)).json()
    file_id = project["inputs"][0]["file_id"]
    download = client.get(
        f"/projects/{presign['project_id']}/files/{file_id}/download", headers=auth(key)
    ).json()
    for i, sig in enumerate(signatures(download["url"])):
        secrets[f"download sig {i}"] = sig
    assert client.get(download["url"]).status_code == 200  # the signed GET itself is logged

    share = client.post(f"/projects/{presign['project_id']}/share", headers=auth(key)).json()
    secrets["share token"] = share["token"]
    shared = client.get(f"/share/{share['token']}")
    assert shared.status_code == 200
    for url in re.findall(r'https?://[^"\s]+sig=[^"\s]+', shared.text):
        for i, sig in enumerate(signatures(url)):
            secrets[f"share sig {i}"] = sig
    assert client.get(f"/s/{share['token']}").status_code == 200

    # The studio: sign up and log in with a password (a wrong one first), then use the session.
    secrets["password"] = PASSWORD
    token = form_token(client, "/signup")
    signup = client.post(
        "/signup",
        data={"email": "person@example.com", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert signup.status_code == 303
    secrets["session cookie"] = client.cookies.get("reframe_session") or ""
    client.cookies.clear()
    for password in ("wrong-" + PASSWORD, PASSWORD):
        token = form_token(client, "/login")
        client.post(
            "/login",
            data={"email": "person@example.com", "password": password, "csrf_token": token},
            follow_redirects=False,
        )
    assert client.get("/me").status_code == 200
    # A key that is refused still must not be written down.
    wrong_key = key[:-6] + "abcdef"
    secrets["wrong key"] = wrong_key
    assert client.get("/me", headers=auth(wrong_key)).status_code == 401

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    text = stream.getvalue()
    assert len(lines) > 20  # the workflow was logged, with the access line of each request
    assert any(line.get("route") == "/storage/{key:path}" for line in lines)
    assert all(line["request_id"] for line in lines if line["logger"] == "reframe.access")
    leaks = [name for name, value in secrets.items() if value and value in text]
    assert leaks == [], f"secrets in the log: {leaks}"
    assert "sig=[redacted]" in text  # the signed requests were logged, without signatures
