"""The client's hand-written models and routes against the server's /openapi.json.

Every response dataclass must have exactly the schema's fields with the same types and the same
required/optional split, every request TypedDict likewise, and every API route must be one the
client knows with the same body and answer. A server change that the client does not follow
(a renamed or retyped field, a new endpoint, a new status value) fails here.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from reframe_client import _core
from reframe_client import models as m

from reframe.api.app import create_app
from reframe.config import Settings

# Request bodies the client sends, by the schema name FastAPI gives them.
REQUEST_BODIES: dict[str, type] = {
    "PresignIn": m.PresignBody,
    "EstimateIn": m.EstimateBody,
    "EstimateVideoIn": m.EstimateVideoBody,
    "JobCreateIn": m.JobCreateBody,
    "OutputIn": m.OutputBody,
}
# Served by the app but not part of the customer's API: storage URLs come signed inside other
# answers (upload_url, output_url) and are used as they are; /healthz is for load balancers.
NOT_CLIENT_ROUTES = {("PUT", "/storage/{key}"), ("GET", "/storage/{key}"), ("GET", "/healthz")}
NOT_CLIENT_SCHEMAS = {"ErrorOut", "HealthOut"}

RESPONSE_MODELS: list[type] = [
    cls
    for cls in vars(m).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and hasattr(cls, "SCHEMA")
]
CLIENT_ENUMS: list[type[enum.Enum]] = [
    cls
    for cls in vars(m).values()
    if isinstance(cls, type) and issubclass(cls, enum.Enum) and cls.__module__ == m.__name__
]


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("openapi")
    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'unused.db'}")
    spec: dict[str, Any] = create_app(settings).openapi()
    return spec


def components(spec: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = spec["components"]["schemas"]
    return schemas


# --- canonical type strings, one from each side -----------------------------------------------


def schema_type(prop: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return f"enum {name}" if "enum" in schemas[name] else f"model {name}"
    if "anyOf" in prop:
        arms = [a for a in prop["anyOf"] if a.get("type") != "null"]
        nullable = len(arms) < len(prop["anyOf"])
        # Several arms (a CRF number or a preset name) in a canonical order.
        inner = " | ".join(sorted(schema_type(a, schemas) for a in arms))
        return f"{inner} | None" if nullable else inner
    kind = prop.get("type")
    if kind == "string":
        return "datetime" if prop.get("format") == "date-time" else "str"
    if kind == "array":
        return f"list[{schema_type(prop['items'], schemas)}]"
    if kind == "object":
        extra = prop.get("additionalProperties", True)
        if extra is True or extra == {}:
            return "dict[Any]"
        return f"dict[{schema_type(extra, schemas)}]"
    simple = {"integer": "int", "number": "float", "boolean": "bool"}
    assert kind in simple, f"a schema type the client cannot model: {prop}"
    return simple[kind]


def hint_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " | ".join(sorted(hint_type(a) for a in arms))
        return f"{inner} | None" if len(arms) < len(typing.get_args(tp)) else inner
    if origin is list:
        return f"list[{hint_type(typing.get_args(tp)[0])}]"
    if origin is dict:
        key, value = typing.get_args(tp)
        assert key is str, tp
        return "dict[Any]" if value is Any else f"dict[{hint_type(value)}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"enum {tp.__name__}"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"model {tp.SCHEMA}"  # type: ignore[attr-defined]
    if typing.is_typeddict(tp):  # a request body nested in another (JobCreate's output)
        return f"model {next(n for n, td in REQUEST_BODIES.items() if td is tp)}"
    names = {str: "str", int: "int", float: "float", bool: "bool", datetime: "datetime"}
    return names[tp]


def schema_fields(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    required = set(schema.get("required", []))
    return {
        name: (schema_type(prop, schemas), name in required)
        for name, prop in schema.get("properties", {}).items()
    }


def dataclass_fields(cls: type) -> dict[str, tuple[str, bool]]:
    hints = typing.get_type_hints(cls)
    return {
        f.name: (hint_type(hints[f.name]), f.default is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    }


def typeddict_fields(td: type) -> dict[str, tuple[str, bool]]:
    hints = typing.get_type_hints(td)
    required: frozenset[str] = td.__required_keys__  # type: ignore[attr-defined]
    return {name: (hint_type(tp), name in required) for name, tp in hints.items()}


def diff(client: dict[str, tuple[str, bool]], server: dict[str, tuple[str, bool]]) -> list[str]:
    problems = [f"{n}: server has {server[n]}, client lacks it" for n in server.keys() - client]
    problems += [f"{n}: client has {client[n]}, server lacks it" for n in client.keys() - server]
    problems += [
        f"{n}: client (type, required) {client[n]} != server {server[n]}"
        for n in client.keys() & server.keys()
        if client[n] != server[n]
    ]
    return sorted(problems)


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=lambda cls: cls.__name__)
def test_response_model_matches_its_schema(model: type, openapi: dict[str, Any]) -> None:
    schemas = components(openapi)
    name: str = model.SCHEMA  # type: ignore[attr-defined]
    assert name in schemas, f"{model.__name__} mirrors {name}, which /openapi.json no longer has"
    assert diff(dataclass_fields(model), schema_fields(schemas[name], schemas)) == []


@pytest.mark.parametrize("name", sorted(REQUEST_BODIES))
def test_request_body_matches_its_schema(name: str, openapi: dict[str, Any]) -> None:
    schemas = components(openapi)
    assert diff(typeddict_fields(REQUEST_BODIES[name]), schema_fields(schemas[name], schemas)) == []


@pytest.mark.parametrize("enum_cls", CLIENT_ENUMS, ids=lambda cls: cls.__name__)
def test_enum_values_match(enum_cls: type[enum.Enum], openapi: dict[str, Any]) -> None:
    schema = components(openapi)[enum_cls.__name__]
    assert sorted(e.value for e in enum_cls) == sorted(schema["enum"])


def test_every_schema_has_a_client_model(openapi: dict[str, Any]) -> None:
    covered = {cls.SCHEMA for cls in RESPONSE_MODELS}  # type: ignore[attr-defined]
    covered |= set(REQUEST_BODIES) | {cls.__name__ for cls in CLIENT_ENUMS}
    missing = set(components(openapi)) - covered - NOT_CLIENT_SCHEMAS
    assert missing == set(), f"add client models (reframe_client.models) for {sorted(missing)}"


def _ref_name(content: dict[str, Any] | None) -> str | None:
    schema = (content or {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def test_routes_match_the_schema(openapi: dict[str, Any]) -> None:
    served = {
        (method.upper(), path)
        for path, ops in openapi["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    known = {(r.method, r.path) for r in _core.ROUTES}
    assert served - NOT_CLIENT_ROUTES - known == set(), "endpoints the client has no Route for"
    assert known - served == set(), "client Routes the server does not serve"
    body_names = {td: name for name, td in REQUEST_BODIES.items()}
    for route in _core.ROUTES:
        op = openapi["paths"][route.path][route.method.lower()]
        if route.model is None:
            assert "204" in op["responses"], route
        else:
            answer = _ref_name(op["responses"]["200"].get("content"))
            assert answer == route.model.SCHEMA, (route, answer)  # type: ignore[attr-defined]
        sent = _ref_name(op.get("requestBody", {}).get("content"))
        assert sent == (body_names[route.body] if route.body else None), (route, sent)
        # Public routes are the ones that document no 401.
        assert route.public == ("401" not in op["responses"]), route


def test_parse_rejects_a_body_that_breaks_the_contract() -> None:
    good = {"free_xeconds": 3, "paid_xeconds": 0, "total_xeconds": 3}
    assert m.parse(m.Balance, good) == m.Balance(3, 0, 3)
    assert m.parse(m.Balance, {**good, "new_field": 1}).total_xeconds == 3  # newer server
    for broken in ({**good, "total_xeconds": "3"}, {"free_xeconds": 3, "paid_xeconds": 0}):
        with pytest.raises(m.ModelError):
            m.parse(m.Balance, broken)
    with pytest.raises(m.ModelError, match="not one of"):
        m.parse(m.JobEvent, {"status": "exploded", "at": "2026-01-01T00:00:00Z", "message": None})


def test_the_package_does_not_import_the_server() -> None:
    root = Path(m.__file__).parent
    for source in root.glob("*.py"):
        text = source.read_text()
        assert "import reframe\n" not in text, source
        assert "from reframe." not in text, source
