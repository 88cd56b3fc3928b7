"""The Grafana dashboard shipped in configs/grafana/cpnode.json: every PromQL expression names
only metrics a running node exports (with the suffixes their types add) and filters each by the
`job` variable; every business metric and every HTTP metric has a panel; the layout is valid."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from node.telemetry.families import families
from node.telemetry.readings import Readings
from tests.support.nodes import make_node_dir, running_node
from tests.support.scrape import scrape

DASHBOARD = Path(__file__).resolve().parents[2] / "configs" / "grafana" / "cpnode.json"
METRIC = re.compile(r"\b(cpnode_[a-z0-9_]+)(\{[^}]*\})?")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for item in items:
        found.append(item)
        found.extend(panels(item.get("panels", [])))
    return found


def expressions() -> list[str]:
    """Every target's PromQL expression."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]


def family_of(name: str, exported: dict[str, str]) -> str:
    """The family a sample name belongs to (`x_total` → `x` for a counter `x`)."""
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in exported:
            return name.removesuffix(suffix)
    return name


@pytest.fixture(name="exported", scope="module")
def fixture_exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Family name → type, as a fresh node's /metrics names them."""

    async def read() -> dict[str, str]:
        config = make_node_dir(tmp_path_factory.mktemp("dash"), "dash")
        async with running_node(config) as server:
            return (await scrape(server.url)).families

    return asyncio.run(read())


def test_every_expression_names_an_exported_metric(exported: dict[str, str]) -> None:
    """Each metric an expression selects is exported under that exact sample name, and is filtered by
    the dashboard's `job` variable."""
    samples = {name + suffix for name, kind in exported.items() for suffix in SUFFIXES.get(kind, ("",))}
    exprs = expressions()
    assert len(exprs) >= 30
    for expr in exprs:
        assert expr.count("(") == expr.count(")"), expr
        names = METRIC.findall(expr)
        assert names, expr
        for name, selector in names:
            assert name in samples, f"{name} in {expr!r} is not exported"
            assert selector.startswith('{job=~"$job"'), expr


def test_every_business_and_http_metric_has_a_panel(exported: dict[str, str]) -> None:
    """Business families, the cache's own and the HTTP ones each appear in some expression."""
    shown = {family_of(name, exported) for expr in expressions() for name, _ in METRIC.findall(expr)}
    wanted = {f.name for f in families(Readings(taken_ts=0.0))}
    wanted |= {name for name in exported if name.startswith(("cpnode_http_", "cpnode_business_metrics_"))}
    assert wanted <= set(exported)
    assert sorted(wanted - shown) == []


def test_layout() -> None:
    """Panel ids are unique, every panel fits the 24-column grid, and queries use the datasource variable."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = panels(dashboard["panels"])
    ids = [p["id"] for p in found]
    assert len(ids) == len(set(ids))
    for p in found:
        grid = p["gridPos"]
        assert grid["x"] >= 0, p["title"]
        assert grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["description"] is not None
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "job"}
