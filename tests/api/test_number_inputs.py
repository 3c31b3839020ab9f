"""Numbers in request bodies: Infinity, NaN and overflowing literals are a 400 naming the field.

Python's JSON parser (which FastAPI uses) reads `Infinity`, `-Infinity`, `NaN` and `1e999` as
floats; before this was refused, `POST /pricing/estimate` answered 500 to them (math.ceil of an
infinite duration). The bodies are found in the app itself, so a new request model with a
plain float is covered without touching this file.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tests.fixtures.app import ApiHarness, auth

NON_FINITE = ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"]


def _is_number(annotation: Any) -> bool:
    if annotation in (float, int):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_number(arg) for arg in typing.get_args(annotation))
    return False


def json_bodies(app: Any) -> list[tuple[str, str, type[BaseModel]]]:
    """(method, path, model) of every documented route that takes a JSON body model."""
    found = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        if route.body_field is None:
            continue
        model = route.body_field.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for method in sorted(route.methods):
                found.append((method, ctx.path, model))
    return found


def _example(model: type[BaseModel]) -> dict[str, Any]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    examples = extra.get("examples")
    # The docs show it, and this test starts from it.
    assert examples, f"{model.__name__} needs an example body in its json_schema_extra"
    example: dict[str, Any] = dict(examples[0])  # type: ignore[index, arg-type]
    return example


def _cases(api: ApiHarness) -> list[tuple[str, str, str, dict[str, Any]]]:
    cases = []
    for method, path, model in json_bodies(api.app):
        for name, field in model.model_fields.items():
            if _is_number(field.annotation):
                cases.append((method, path, name, _example(model)))
    return cases


def test_every_json_body_with_numbers_is_covered(api: ApiHarness) -> None:
    covered = {(path, name) for _, path, name, _ in _cases(api)}
    # The ones known today; finding fewer means the discovery above broke.
    assert {
        ("/pricing/estimate", "duration_sec"),
        ("/pricing/estimate", "source_fps"),
        ("/pricing/estimate", "target_fps"),
        ("/upload/presign", "size_bytes"),
        ("/jobs", "target_fps"),
    } <= covered


@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_numbers_are_a_400_naming_the_field(api: ApiHarness, literal: str) -> None:
    _, key = api.create_account()
    failures = []
    with TestClient(api.app, raise_server_exceptions=False) as client:
        for method, path, name, example in _cases(api):
            body = {**example, name: "__NUMBER__"}
            raw = json.dumps(body).replace('"__NUMBER__"', literal)
            resp = client.request(
                method,
                path,
                content=raw,
                headers={**auth(key), "Content-Type": "application/json"},
            )
            detail = resp.json().get("detail") if resp.status_code != 500 else resp.text
            if resp.status_code != 400 or name not in str(detail):
                failures.append(f"{method} {path} {name}={literal}: {resp.status_code} {detail}")
    assert not failures, "\n".join(failures)


def test_finite_estimate_still_works(api: ApiHarness) -> None:
    resp = api.client.post(
        "/pricing/estimate",
        json={"duration_sec": 1e-3, "source_fps": 23.976, "target_fps": 60},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["billable_seconds"] == 1
