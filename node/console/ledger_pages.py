"""The ledger page: balances, holds, the latest checkpoint, reconciliation runs and discrepancies
(and a form to reconcile with a partner now), a period's audit bundle to download, and a form that
uploads a bundle and shows its verification. Every read and action goes through the API
(`/api/v1/ledger/...`) as the signed-in person; an auditor sees all of it, and the API refuses the
actions an auditor may not take."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import Any

from aiohttp import web

from node.console.api import ApiRefused
from node.console.render import SECURITY_HEADERS
from node.console.summaries import balances
from node.console.web import Page, page

PERIOD_RE = re.compile(r"\d{4}-\d{2}")
DAY_MS = 86_400_000
MARGIN_S = 300
"""Clock skew tolerated at a reconciliation window's edges (as `cpnode ledger reconcile`'s default)."""


def _day_ms(text: str, name: str) -> int:
    """Midnight UTC of a `YYYY-MM-DD` form field, in epoch ms."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ApiRefused(400, "bad_date", f"{name}: a date as YYYY-MM-DD") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1000


async def _render(p: Page, status: int = 200, **results: Any) -> web.Response:
    """The ledger page, with the result of an action (`audit`, `verification`, `reconciled`)."""
    accounts, checkpoint, recon, partners = await asyncio.gather(
        p.api.get("/api/v1/ledger/accounts"),
        p.api.maybe("/api/v1/ledger/checkpoint"),
        p.api.maybe("/api/v1/ledger/reconciliations", limit="20"),
        p.api.maybe("/api/v1/partners/links"),
    )
    rows = balances(accounts["accounts"])
    note = checkpoint if isinstance(checkpoint, str) else None
    lines = note.splitlines() if note else []
    recon = recon or {"reconciliations": [], "discrepancies": [], "open": 0}
    today = dt.datetime.now(dt.UTC).date()
    return p.render(
        "ledger.html",
        status,
        title="Ledger",
        accounts=rows,
        holds=[r for r in rows if r["held"]],
        checkpoint=note,
        checkpoint_size=lines[1] if len(lines) > 2 else None,
        checkpoint_root=lines[2] if len(lines) > 2 else None,
        runs=recon["reconciliations"],
        discrepancies=recon["discrepancies"],
        open_discrepancies=recon["open"],
        partners=sorted(r["name"] for r in (partners or {}).get("partners", [])),
        this_month=today.strftime("%Y-%m"),
        yesterday=(today - dt.timedelta(days=1)).isoformat(),
        today=today.isoformat(),
        audit=results.get("audit"),
        verification=results.get("verification"),
        reconciled=results.get("reconciled"),
    )


@page(operator=True)
async def ledger(p: Page) -> web.StreamResponse:
    """Balances, holds, the latest signed checkpoint, reconciliations, bundle export and verify."""
    return await _render(p)


@page(operator=True)
async def export_audit(p: Page) -> web.StreamResponse:
    """Export a signed audit bundle into the node's data folder and show its verification."""
    audit = await p.api.call("POST", "/api/v1/ledger/audits")
    return await _render(p, audit=audit)


@page(operator=True)
async def download_bundle(p: Page) -> web.StreamResponse:
    """`GET ledger/bundle?period=YYYY-MM`: the period's signed bundle as a tar.gz download."""
    period = p.request.query.get("period", "").strip()
    if not PERIOD_RE.fullmatch(period):
        raise ApiRefused(400, "bad_period", "period: a month as YYYY-MM")
    return await p.api.download(p.request, "/api/v1/ledger/bundle", {"period": period}, SECURITY_HEADERS)


@page(operator=True)
async def verify_bundle(p: Page) -> web.StreamResponse:
    """`POST ledger/verify`: send the uploaded bundle to the API's verifier and show what it found."""
    upload = p.form.get("bundle") if p.form is not None else None
    if not isinstance(upload, web.FileField):
        verification = {"ok": False, "message": "Choose a bundle file (.tar.gz) to verify."}
        return await _render(p, 400, verification=verification)
    fields = {"key": p.field("key")} if p.field("key") else {}
    try:
        report = await p.api.upload(
            "/api/v1/ledger/bundles/verify", "bundle", upload.filename or "bundle", upload.file, fields
        )
    except ApiRefused as exc:
        if exc.status not in (400, 413, 422):
            raise
        verification = {"ok": False, "message": str(exc), "filename": upload.filename}
        return await _render(p, exc.status, verification=verification)
    return await _render(p, verification={**report, "filename": upload.filename})


@page(operator=True)
async def reconcile(p: Page) -> web.StreamResponse:
    """`POST ledger/reconcile`: reconcile with a partner over the days given (UTC, both included),
    up to `MARGIN_S` ago at the latest (a partner summarises only a window closed with its margin)."""
    first = _day_ms(p.field("from"), "from")
    last = _day_ms(p.field("to") or p.field("from"), "to")
    end = min(last + DAY_MS, int(time.time() * 1000) - (MARGIN_S + 1) * 1000)
    body = {"partner": p.field("partner"), "from_ms": first, "to_ms": end, "margin_s": MARGIN_S}
    try:
        outcome = await p.api.call("POST", "/api/v1/ledger/reconciliations", body)
    except ApiRefused as exc:
        if exc.status not in (400, 404, 502):
            raise
        return await _render(p, exc.status, reconciled={"ok": False, "message": f"{exc} ({exc.code})"})
    return await _render(p, reconciled={"ok": True, **outcome})
