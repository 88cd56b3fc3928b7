"""The operator's pages: overview, federation, pools and offers, migrations, ledger, availability
plan. Each reads through the node's API as the signed-in admin (see node.console.api)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import math
import time
from typing import Any

from aiohttp import web

from node.availability import format_percent, load_architecture, make_plan
from node.availability.paper import PAPER_AVAILABILITIES, PAPER_TABLE1, PAPER_TARGETS
from node.console.api import ApiRefused
from node.console.charts import GraphNode, bar_chart, federation_graph, line_chart
from node.console.rows import partner_rows
from node.console.summaries import pool_use
from node.console.web import Page, page
from node.money import parse_major
from node.resources import config_file

ATTENTION_ROWS = 10
"""Partners whose link is not ok that the overview lists (the federation page lists them all)."""


def _day_start(now_ts: int) -> int:
    moment = dt.datetime.fromtimestamp(now_ts, dt.UTC)
    return int(dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC).timestamp())


async def _readiness(p: Page) -> dict[str, Any]:
    try:
        return dict(await p.api.get("/readyz"))
    except ApiRefused as exc:
        return {"status": "not_ready", "checks": {"node": str(exc)}}


@page(operator=True)
async def overview(p: Page) -> web.StreamResponse:
    """Identity, readiness, partners' link state, pools' health, today's trades and revenue."""
    now = int(time.time())
    node, ready, partners, pools, recent, day = await asyncio.gather(
        p.api.get("/api/v1/node"),
        _readiness(p),
        p.api.maybe("/api/v1/partners/links"),
        p.api.maybe("/api/v1/pools"),
        p.api.maybe("/api/v1/orders", limit="10"),
        p.api.maybe("/api/v1/trading/summary", since_ts=str(_day_start(now))),
    )
    uses = pool_use(pools or {})
    rows = (partners or {}).get("partners", [])
    return p.render(
        "overview.html",
        title="Overview",
        node=node,
        ready=ready,
        links=sorted((partners or {}).get("counts", {}).items(), key=lambda i: (i[0] != "ok", i[0])),
        attention=[r for r in rows if r.get("status") != "ok"][:ATTENTION_ROWS],
        partner_count=len(rows),
        alerts=(partners or {}).get("alerts", [])[:5],
        pools=(pools or {}).get("pools", []),
        uses=uses,
        day=day,
        recent=(recent or {}).get("orders", []),
    )


@page(operator=True)
async def federation(p: Page) -> web.StreamResponse:
    """The graph of this node and its partners, catalogs, alerts, candidates, and the pin form."""
    node, data = await asyncio.gather(p.api.get("/api/v1/node"), p.api.get("/api/v1/partners"))
    partners = data["partners"]
    graph = federation_graph(
        node["name"], [GraphNode(r["name"], r["status"], str(r["catalog_age_s"] or "")) for r in partners]
    )
    return p.render(
        "federation.html",
        title="Federation",
        node=node,
        partners=partners,
        partner_rows=partner_rows(partners, p.console.url),
        alerts=data["alerts"],
        discovered=data["discovered"],
        graph=graph,
        problem=None,
    )


@page(operator=True)
async def pin_partner(p: Page) -> web.StreamResponse:
    """Pin a partner from the form (name, URL, public key, credit limit in major units)."""
    urls = [u for u in p.field("urls").split() if u]
    try:
        credit = parse_major(p.field("credit_limit") or "0", p.field("currency") or "CNY")
    except ValueError as exc:
        raise ApiRefused(400, "bad_amount", str(exc)) from None
    await p.api.call(
        "POST",
        "/api/v1/partners",
        {"name": p.field("name"), "urls": urls, "public_key": p.field("public_key"), "credit_limit": credit},
    )
    p.redirect("federation")


@page(operator=True)
async def trust_partner(p: Page) -> web.StreamResponse:
    """Pin a discovered node after its fingerprint was compared."""
    await p.api.call(
        "POST", "/api/v1/partners/trust", {"name": p.field("name"), "fingerprint": p.field("fingerprint")}
    )
    p.redirect("federation")


@page(operator=True)
async def confirm_remove(p: Page) -> web.StreamResponse:
    """Ask before removing a partner (GET), remove it once confirmed (POST)."""
    name = p.request.match_info["name"]
    if p.request.method == "POST":
        await p.api.call("POST", f"/api/v1/partners/{name}/remove")
        p.redirect("federation")
    data = await p.api.get("/api/v1/partners")
    partner = next((r for r in data["partners"] if r["name"] == name), None)
    if partner is None:
        raise ApiRefused(404, "unknown_partner", f"no partner called {name!r}")
    return p.render("confirm_remove.html", title=f"Remove {name}?", partner=partner)


@page(operator=True)
async def pools(p: Page) -> web.StreamResponse:
    """Pools' health, free capacity and utilisation over time (the scheduler's samples), and every
    offer with its compute identifier and metric score."""
    data, history = await asyncio.gather(p.api.get("/api/v1/pools"), p.api.maybe("/api/v1/pools/utilisation"))
    uses = pool_use(data)
    sampled = (history or {}).get("pools", {})
    charts = {}
    for use in uses:
        points = sampled.get(use.name, {}).get("points", [])
        top = max([use.total, *(total for _, _, total in points)])
        charts[use.name] = line_chart(
            f"Utilisation of {use.name}",
            [(ts, used) for ts, used, _ in points],
            max(top, 1),
            use.unit + " in use",
        )
    return p.render(
        "pools.html",
        title="Pools and offers",
        pools=data["pools"],
        offers=data["offers"],
        uses=uses,
        charts=charts,
        every_s=(history or {}).get("every_s"),
        keep_h=(history or {}).get("keep_h"),
    )


@page(operator=True)
async def migrations(p: Page) -> web.StreamResponse:
    """Every migration with its progress."""
    data = await p.api.get("/api/v1/migrations")
    return p.render("migrations.html", title="Migrations", migrations=data["migrations"][:200])


@page(operator=True)
async def migration(p: Page) -> web.StreamResponse:
    """One migration: live progress bar, rate, ETA, errors, history, and cancel."""
    found = await p.api.get(f"/api/v1/migrations/{p.request.match_info['id']}")
    return p.render("migration.html", title=f"Migration {found['id']}", m=found)


@page(operator=True)
async def cancel_migration(p: Page) -> web.StreamResponse:
    """Cancel a migration (the API refuses once the cutover began)."""
    migration_id = p.request.match_info["id"]
    await p.api.call("POST", f"/api/v1/migrations/{migration_id}/cancel")
    p.redirect(f"migrations/{migration_id}")


@functools.cache
def _paper_chart() -> list[tuple[str, Any]]:
    """Table 1 as one chart per component availability, in nines (−log10 of unavailability)."""
    charts = []
    rows = ("none", *(str(t) for t in PAPER_TARGETS), "full")
    for column, availability in enumerate(PAPER_AVAILABILITIES):
        bars = []
        for row in rows:
            value = float(PAPER_TABLE1[row][column]) / 100
            label = row if row in ("none", "full") else f"target {format_percent(float(row))} %"
            bars.append((label, round(-math.log10(max(1 - value, 1e-9)), 2)))
        charts.append(
            (f"a = {availability}", bar_chart(f"Table 1, a = {availability}, in nines", bars, "nines"))
        )
    return charts


@functools.cache
def _node_plan() -> dict[str, Any]:
    architecture = load_architecture(config_file("architecture") / "node.toml")
    backups = architecture.backups if architecture.backups is not None else 2
    target = architecture.target if architecture.target is not None else 0.9999
    return make_plan(architecture, "optimal", backups, target).to_dict()


@page(operator=True)
async def plan(p: Page) -> web.StreamResponse:
    """The node's availability plan and the paper's Table 1 as charts."""
    who = await p.api.get("/api/v1/whoami")
    if not who.get("admin"):
        raise ApiRefused(403, "admin_only", "this page needs the admin token")
    node_plan, charts = await asyncio.gather(asyncio.to_thread(_node_plan), asyncio.to_thread(_paper_chart))
    return p.render(
        "plan.html",
        title="Availability plan",
        plan=node_plan,
        charts=charts,
        table=PAPER_TABLE1,
        availabilities=PAPER_AVAILABILITIES,
        percent=format_percent,
    )
