"""The Grafana dashboard shows what the service exports, by exactly the exported names: every
metric an expression names is in a real scrape of the app, and every family the app exports is
on some panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.app import auth, make_app, make_settings
from tests.fixtures.db import TestDatabase

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "reframe-dashboard.json"

# PromQL words that are not metric names: functions are followed by "(", these are not.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, keywords, label
    names in grouping clauses or label matchers, strings, or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", "", text)  # offset durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        following = text[match.end() :].lstrip()[:1]
        if following == "(" or word.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                found.append((panel["title"], target["expr"]))

    walk(data["panels"])
    return found


@pytest.fixture
def exported(sqlite_db: TestDatabase, tmp_path: Path) -> tuple[set[str], set[str]]:
    """(sample names, family names) of a scrape after traffic of every kind."""
    settings = make_settings(
        tmp_path, sqlite_db, rate_limit_write_per_sec=0.001, rate_limit_write_burst=1
    )
    with TestClient(make_app(settings, sqlite_db)) as client:
        client.get("/healthz")
        client.post("/upload/presign", json={}, headers=auth("rf_live_x"))
        client.post("/upload/presign", json={}, headers=auth("rf_live_x"))  # 429
        text = client.get("/metrics").text
    samples, families = set(), set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        samples |= {s.name for s in family.samples}
    return samples, families


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{status=~"5.."}[5m]))) '
        "/ clamp_min(b_total offset 5m, 1) and on(pool) c"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_every_dashboard_expression_reads_exported_metrics(
    exported: tuple[set[str], set[str]],
) -> None:
    samples, _ = exported
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, f"{title!r}: {expr!r} reads no metric"
        unknown = names - samples
        assert not unknown, f"{title!r} reads {sorted(unknown)}, which /metrics does not export"


def test_every_exported_family_is_on_the_dashboard(exported: tuple[set[str], set[str]]) -> None:
    _, families = exported
    used = {name for _, expr in dashboard_exprs() for name in metric_names(expr)}
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert families - shown == set()
    assert all(name.startswith("reframe_") for name in families)


def test_the_dashboard_is_importable_json_on_a_datasource_variable() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "reframe-service"
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
