"""Pages over the strategy and statement APIs: the operator's strategies with their A/B report,
and statements (an operator sees every account's, a consumer its own)."""

from __future__ import annotations

import re

from aiohttp import web

from node.console.api import ApiRefused
from node.console.charts import bar_chart
from node.console.render import SECURITY_HEADERS
from node.console.web import Page, page

REF_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}@[0-9]{1,9}$")
REPORT_FIGURES = (
    ("price_paid", "Price paid per order"),
    ("time_to_running_s", "Time to running (s)"),
    ("task_success", "Task success rate"),
    ("latency_ms", "Decision latency (ms)"),
)


@page(operator=True)
async def strategies(p: Page) -> web.StreamResponse:
    """Registered strategy versions, built-in kinds, splits, and with `?a=NAME@V&b=NAME@V` the A/B
    report of the two on the orders each chose."""
    a, b = p.request.query.get("a", "").strip(), p.request.query.get("b", "").strip()
    catalogue = await p.api.get("/api/v1/strategies")
    report = None
    charts = []
    if a or b:
        if not (REF_RE.fullmatch(a) and REF_RE.fullmatch(b)):
            raise ApiRefused(400, "bad_request", "name both versions as NAME@VERSION (e.g. cheapest@1)")
        report = await p.api.get("/api/v1/strategies/report", a=a, b=b)
        measured = [key for key, _ in REPORT_FIGURES if any(report[s][key].get("n") for s in ("a", "b"))]
        for key, label in REPORT_FIGURES:
            if key not in measured or key == "price_paid":  # money is shown in the table, formatted
                continue
            bars = [
                (str(report[side]["strategy"]), float(report[side][key].get("mean") or 0.0))
                for side in ("a", "b")
            ]
            charts.append((label, bar_chart(label, bars)))
    return p.render(
        "strategies.html",
        title="Strategies",
        catalogue=catalogue,
        report=report,
        charts=charts,
        figures=REPORT_FIGURES,
        a=a,
        b=b,
    )


@page()
async def statements(p: Page) -> web.StreamResponse:
    """Statements, newest first (a consumer's own only, as the API answers)."""
    listing = await p.api.get("/api/v1/statements")
    return p.render("statements.html", title="Statements", statements=listing["statements"][:200])


@page()
async def statement(p: Page) -> web.StreamResponse:
    """One statement: its summary and lines (the signed document as the API answers it)."""
    statement_id = p.request.match_info["id"]
    doc = await p.api.get(f"/api/v1/statements/{statement_id}")
    return p.render("statement.html", title=f"Statement {statement_id}", s=doc, statement_id=statement_id)


@page()
async def statement_csv(p: Page) -> web.StreamResponse:
    """The statement as CSV, downloaded through the API with the signed-in person's token."""
    statement_id = p.request.match_info["id"]
    text = await p.api.call("GET", f"/api/v1/statements/{statement_id}", query={"format": "csv"})
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", statement_id)
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="statement-{safe}.csv"'}
    return web.Response(text=str(text), content_type="text/csv", charset="utf-8", headers=headers)
