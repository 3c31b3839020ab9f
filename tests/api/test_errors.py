"""Error mapping (every error is {"detail": str}) and the OpenAPI document."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from reframe.errors import Conflict, RateLimited
from tests.fixtures.app import ApiHarness

SECRET_INTERNAL = "postgres://admin:hunter2@db/internal /srv/reframe/secret.py line 42"


def test_unexpected_exception_is_500_without_internals(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    @api.app.get("/_boom")
    def boom() -> None:
        raise RuntimeError(SECRET_INTERNAL)

    with (
        caplog.at_level(logging.ERROR, logger="reframe.api"),
        TestClient(api.app, raise_server_exceptions=False) as client,
    ):
        resp = client.get("/_boom")
    assert resp.status_code == 500
    assert set(resp.json()) == {"detail"}
    assert "hunter2" not in resp.text
    assert "Traceback" not in resp.text
    assert "secret.py" not in resp.text
    assert SECRET_INTERNAL in caplog.text  # the operator still gets the cause, in the log


def test_domain_errors_map_once(api: ApiHarness) -> None:
    @api.app.get("/_conflict")
    def conflict() -> None:
        raise Conflict("already finished")

    @api.app.get("/_slow_down")
    def slow_down() -> None:
        raise RateLimited("too many requests; wait", retry_after=2.4)

    resp = api.client.get("/_conflict")
    assert (resp.status_code, resp.json()) == (409, {"detail": "already finished"})
    resp = api.client.get("/_slow_down")
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "3"  # rounded up: waiting 2 s would be refused again


def test_unknown_route_and_method_are_json(api: ApiHarness) -> None:
    resp = api.client.get("/no/such/thing")
    assert resp.status_code == 404
    assert set(resp.json()) == {"detail"}
    resp = api.client.delete("/pricing/config")
    assert resp.status_code == 405
    assert set(resp.json()) == {"detail"}


def test_openapi_documents_everything(api: ApiHarness) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/me", "get"),
        ("/me/api-key", "post"),
        ("/pricing/config", "get"),
        ("/pricing/estimate", "post"),
        ("/upload/presign", "post"),
        ("/pricing/estimate-video", "post"),
        ("/jobs", "post"),
        ("/jobs", "get"),
        ("/jobs/{job_id}", "get"),
        ("/projects", "get"),
        ("/projects/{project_id}", "get"),
        ("/projects/{project_id}/files/{file_id}/download", "get"),
        ("/projects/{project_id}/share", "post"),
        ("/projects/{project_id}/share", "delete"),
        ("/share/{token}", "get"),
    }
    present = {(p, m) for p, ops in paths.items() for m in ops}
    assert expected <= present
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Your API key: `Authorization: Bearer rf_live_...`",
    }
    public = {("/pricing/config", "get"), ("/pricing/estimate", "post"), ("/share/{token}", "get")}
    for path, method in expected:
        op = paths[path][method]
        secured = any("ApiKey" in s for s in op.get("security", []))
        assert secured == ((path, method) not in public), (path, method)
        assert "500" in op["responses"]
        for code, resp in op["responses"].items():
            if code.startswith(("4", "5")):
                schema = resp["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, code)
    assert "401" in paths["/jobs"]["post"]["responses"]
    assert "402" in paths["/jobs"]["post"]["responses"]
    assert "413" in paths["/upload/presign"]["post"]["responses"]
    assert spec["components"]["schemas"]["JobCreateIn"]["examples"]


def test_an_unexpected_500_keeps_the_connection_open(api: ApiHarness) -> None:
    """A server that answers 500 and then drops the socket breaks every keep-alive client: the
    next request, sent on the pooled connection, is reset (the client saw a write that may or
    may not have run). The 500 is a whole answer; the connection lives on."""
    import http.client

    from tests.fixtures.browser import _ServerThread, free_port

    @api.app.get("/_boom")
    def boom() -> None:
        raise RuntimeError(SECRET_INTERNAL)

    port = free_port()
    server = _ServerThread(api.app, port)
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/_boom")
        first = conn.getresponse()
        assert first.status == 500
        assert b"hunter2" not in first.read()
        assert first.getheader("connection") != "close"
        conn.request("GET", "/healthz")  # the same socket
        second = conn.getresponse()
        assert (second.status, second.read()) == (200, b'{"status":"ok"}')
        conn.close()
    finally:
        server.stop()
