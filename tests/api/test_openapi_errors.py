"""/openapi.json documents the errors every operation can really answer.

The per-key rate limit (a middleware in front of every route) answers 429 with Retry-After
anywhere, and any route can fail with a 500: a client generated from the schema must know
both bodies. Found by the schema fuzzer with rate limits on (429 on operations that did not
list it).
"""

from __future__ import annotations

from tests.fixtures.app import ApiFactory, ApiHarness

ERROR_BODY = {"$ref": "#/components/schemas/ErrorOut"}


def test_every_operation_documents_429_and_500(api: ApiHarness) -> None:
    spec = api.client.get("/openapi.json").json()
    missing = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code in ("429", "500"):
                resp = op["responses"].get(code)
                if resp is None or resp["content"]["application/json"]["schema"] != ERROR_BODY:
                    missing.append(f"{method.upper()} {path} {code}")
            limited = op["responses"].get("429", {})
            if "Retry-After" not in limited.get("headers", {}):
                missing.append(f"{method.upper()} {path} 429 Retry-After header")
    assert not missing, missing


def test_a_rate_limited_answer_matches_the_document(api_factory: ApiFactory) -> None:
    api = api_factory(rate_limit_read_per_sec=0.001, rate_limit_read_burst=1)
    assert api.client.get("/healthz").status_code == 200
    limited = api.client.get("/healthz")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert set(limited.json()) == {"detail"}
