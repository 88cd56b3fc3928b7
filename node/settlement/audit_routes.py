"""Ledger API for auditors: reconciliation runs and their discrepancies, a signed audit bundle of a
period to download, and the verification of an uploaded bundle.

    GET  /api/v1/ledger/reconciliations[?partner=P&limit=N]  recent runs, newest first, and every
                                                             discrepancy recorded (open ones first)
    POST /api/v1/ledger/reconciliations  {"partner", "from_ms"?, "to_ms"?, "margin_s"?}: fetch the
                                         partner's signed summary over the peer API, diff it with
                                         ours, record the result (default window: yesterday, UTC)
    GET  /api/v1/ledger/bundle?period=YYYY-MM  (or ?from_ms=&to_ms=, either optional): a signed
                                         bundle of those transfers, as a tar.gz download (it
                                         signs a checkpoint of the log as it stands, as the
                                         checkpoint job does; no record changes)
    POST /api/v1/ledger/bundles/verify   multipart: `bundle` (tar or tar.gz), `key` (optional, the
                                         node's public key; this node's by default) → the report,
                                         or 422 `audit_failed` naming the file that failed

An upload is capped by the node's body limit (`[http] max_body_bytes`, 413 beyond it) and unpacked
into a fresh temporary folder by `ledger.bundle_archive` (regular plain-named files only, sizes
capped), then checked by the same verifier as `cpnode ledger verify`; nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

import ledger
from federation.errors import FederationError
from federation.server import SERVICE
from federation.store import get_partner
from ledger import bundle_archive
from ledger.statement import period_window
from ledger.store.reconcile import list_reconciliations
from node.context import CTX
from node.db import in_thread
from node.http.body import json_object
from node.http.errors import ApiError, bad_request
from node.trading.errors import TradingError
from node.trading.peer import fetch_summary

DAY_MS = 24 * 3600 * 1000
MAX_LIST = 500
_CHUNK_BYTES = 256 * 1024


def _int_field(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise bad_request(f"{name}: a non-negative integer", code="bad_field", field=name)
    return value


def _int_or(data: dict[str, Any], name: str, default: int) -> int:
    value = _int_field(data, name)
    return default if value is None else value


def _yesterday_ms(now_s: float) -> tuple[int, int]:
    today = dt.datetime.fromtimestamp(now_s, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = int(today.timestamp() * 1000)
    return end - DAY_MS, end


async def reconciliations(request: web.Request) -> web.Response:
    """`GET /api/v1/ledger/reconciliations`: recent runs and the discrepancies recorded."""
    ctx = request.app[CTX]
    partner = request.query.get("partner") or None
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIST:
        raise bad_request(f"limit: between 1 and {MAX_LIST}", code="bad_limit")

    def read() -> dict[str, Any]:
        runs = list_reconciliations(ctx.engine, partner=partner, limit=limit)
        found = ledger.list_discrepancies(ctx.engine, partner=partner)
        found.sort(key=lambda d: (d.correction_id is not None, -d.id))
        return {
            "reconciliations": runs,
            "discrepancies": [d.to_dict() for d in found[:MAX_LIST]],
            "open": sum(1 for d in found if d.correction_id is None),
        }

    return web.json_response(await in_thread(ctx.engine, lambda _engine: read()))


async def run_reconciliation(request: web.Request) -> web.Response:
    """`POST /api/v1/ledger/reconciliations`: reconcile with a partner now (201 with the outcome)."""
    ctx = request.app[CTX]
    data = await json_object(request)
    unknown = sorted(set(data) - {"partner", "from_ms", "to_ms", "margin_s"})
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}", code="bad_field")
    partner_name = data.get("partner")
    if not isinstance(partner_name, str) or not partner_name:
        raise bad_request("partner: the partner node's name", code="bad_field", field="partner")
    default_from, default_to = _yesterday_ms(time.time())
    from_ms = _int_or(data, "from_ms", default_from)
    to_ms = _int_or(data, "to_ms", default_to)
    margin_s = _int_or(data, "margin_s", 300)
    try:
        window = ledger.Window(from_ms, to_ms)
    except ledger.ReconcileError as exc:
        raise bad_request(str(exc), code="bad_window") from None
    partner = await in_thread(ctx.engine, get_partner, partner_name)
    if partner is None:
        raise ApiError(404, "unknown_partner", f"{partner_name!r} is not a pinned partner")
    service = request.app.get(SERVICE)
    if service is None:
        raise ApiError(503, "no_federation", "this process does not speak to partners")
    try:
        theirs = await fetch_summary(
            service, partner, window, margin_s * 1000, ctx.settings.trading.trade_timeout_s
        )
    except (TradingError, FederationError) as exc:
        raise ApiError(502, "partner_summary", f"cannot get {partner_name}'s summary: {exc}") from None
    try:
        outcome = await in_thread(
            ctx.engine,
            ledger.reconcile_with_partner,
            ctx.name,
            partner_name,
            window,
            lambda _ours: theirs,
            margin_ms=margin_s * 1000,
            max_skew_ms=margin_s * 1000,
        )
    except ledger.ReconcileError as exc:
        raise ApiError(502, "bad_summary", f"{partner_name}'s summary: {exc}") from None
    return web.json_response({**outcome.to_dict(), "report": outcome.report}, status=201)


def _export_window(query: Mapping[str, str]) -> tuple[int | None, int | None, str]:
    """[from_ms, to_ms) of the export named by the query, and a name for it."""
    data: dict[str, Any] = {}
    for name, value in query.items():
        try:
            data[name] = value if name == "period" else int(value)
        except ValueError:
            raise bad_request(f"{name}: a non-negative integer", code="bad_field", field=name) from None
    unknown = sorted(set(data) - {"period", "from_ms", "to_ms"})
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}", code="bad_field")
    period = data.get("period")
    if period not in (None, ""):
        if "from_ms" in data or "to_ms" in data:
            raise bad_request("give period, or from_ms/to_ms, not both", code="bad_field")
        if not isinstance(period, str):
            raise bad_request("period: YYYY-MM", code="bad_period", field="period")
        try:
            from_ms, to_ms = period_window(period)
        except ledger.RequestError as exc:
            raise bad_request(f"period: {exc}", code="bad_period", field="period") from None
        return from_ms, to_ms, period
    start = _int_field(data, "from_ms")
    end = _int_field(data, "to_ms")
    if start is not None and end is not None and start >= end:
        raise bad_request("from_ms must be before to_ms", code="bad_window")
    return start, end, f"{start or 'start'}-{end or 'now'}"


async def export_bundle(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/ledger/bundle`: sign a checkpoint, export the period's bundle and stream it as
    a tar.gz (`ledger-NODE-PERIOD.tar.gz`); nothing is left on the node."""
    ctx = request.app[CTX]
    from_ms, to_ms, label = _export_window(request.query)
    top = f"ledger-{ctx.name}-{label}"
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="cpnode-bundle-"))
    try:

        def build() -> Path:
            folder = work / "bundle"
            ledger.export_bundle(
                ctx.engine,
                folder,
                ctx.identity.signing_key,
                ledger.origin_for(ctx.identity.name),
                from_ms=from_ms,
                to_ms=to_ms,
            )
            archive = work / "bundle.tar.gz"
            with archive.open("wb") as out:
                bundle_archive.pack(folder, out, top)
            return archive

        archive = await in_thread(ctx.engine, lambda _engine: build())
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/gzip",
                "Content-Disposition": f'attachment; filename="{top}.tar.gz"',
                "Content-Length": str(archive.stat().st_size),
            }
        )
        await response.prepare(request)
        with archive.open("rb") as source:
            while chunk := await asyncio.to_thread(source.read, _CHUNK_BYTES):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _read_upload(request: web.Request, into: Path, limit: int) -> tuple[Path | None, str | None]:
    """Save the `bundle` part to `into` (at most `limit` bytes) and return it with the `key` part."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request(
            "send the bundle as multipart/form-data, in a part named bundle", code="not_multipart"
        )
    reader = await request.multipart()
    saved: Path | None = None
    key: str | None = None
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise bad_request("nested multipart is not accepted", code="not_multipart")
        if part.name == "bundle" and saved is None:
            saved = into
            with saved.open("wb") as out:
                while chunk := await part.read_chunk(_CHUNK_BYTES):
                    total += len(chunk)
                    if total > limit:
                        raise ApiError(413, "body_too_large", f"the bundle exceeds {limit} bytes")
                    await asyncio.to_thread(out.write, chunk)
        elif part.name == "key":
            text = (await part.read(decode=True))[:200].decode("utf-8", "replace").strip()
            key = text or None
        else:
            await part.release()
    return saved, key


async def verify_upload(request: web.Request) -> web.Response:
    """`POST /api/v1/ledger/bundles/verify`: verify an uploaded bundle with the node's public key
    (or the `key` given): 200 with the report, 422 naming what failed, 400 for what is no bundle."""
    ctx = request.app[CTX]
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="cpnode-verify-"))
    try:
        upload, key_text = await _read_upload(request, work / "upload", ctx.settings.http.max_body_bytes)
        if upload is None:
            raise bad_request("no part named bundle in the form", code="no_bundle")
        if key_text is None:
            verify_key = ctx.identity.signing_key.verify_key
        else:
            from federation.keys import parse_public_key

            try:
                verify_key = parse_public_key(key_text)
            except ValueError as exc:
                raise bad_request(f"key: {exc}", code="bad_key", field="key") from None

        def check() -> dict[str, Any]:
            folder = work / "bundle"
            folder.mkdir()
            with upload.open("rb") as archive:
                files = bundle_archive.unpack(archive, folder)
            report = ledger.verify_bundle(folder, verify_key)
            return {"ok": True, "files": sorted(files), **report.to_dict()}

        try:
            answer = await asyncio.to_thread(check)
        except ledger.AuditError as exc:
            status, code = (
                (400, "not_a_bundle") if exc.where == bundle_archive.ARCHIVE else (422, "audit_failed")
            )
            raise ApiError(status, code, f"verification failed: {exc}", file=exc.where, seq=exc.seq) from None
        return web.json_response(answer)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


def add_routes(app: web.Application) -> None:
    """Mount the auditors' ledger API."""
    app.router.add_get("/api/v1/ledger/reconciliations", reconciliations)
    app.router.add_post("/api/v1/ledger/reconciliations", run_reconciliation)
    app.router.add_get("/api/v1/ledger/bundle", export_bundle)
    app.router.add_post("/api/v1/ledger/bundles/verify", verify_upload)
