"""Supervision over HTTP.

On every node serving `/fed/v1` (the `federation` role):
- `GET /fed/v1/supervision/catalog`  signed by one of the node's supervisors; the node's signed
  catalog of all its own offers, made for that supervisor.
On a supervisor (the `supervisor` role):
- `POST /fed/v1/supervision/reports` signed by a registered node; body: its signed report
  (node.supervision.report); answers `{"status": "accepted"|"duplicate", "node", "seq", "sha256"}`.
- `GET /api/v1/supervision` (admin): national totals by region and chip family, every registered
  node with its latest report's figures and its flags (`never_reported`, `stopped`,
  `contradicts_catalog`).
- `GET /api/v1/supervision/nodes/{name}/history?limit=N&before=SEQ` (admin): a node's reports,
  newest first.
"""

from __future__ import annotations

from aiohttp import web

from federation import canonical
from federation.catalog import build_catalog, offers_for
from federation.partners import Agreement, check_node_name
from federation.server import SERVICE, json_response, read_body
from node.context import CTX
from node.db import in_thread
from node.http.errors import ApiError, bad_request
from node.supervision import store
from node.supervision.report import MAX_REPORT_BYTES
from node.supervision.signed import authenticate
from node.supervision.supervisor import ingest
from node.supervision.tables import nodes_t, supervisors_t
from node.supervision.totals import summary

MAX_HISTORY = 500


async def supervisor_catalog(request: web.Request) -> web.Response:
    """The node's catalog of every own offer, signed for the supervisor that asks."""
    ctx, service = request.app[CTX], request.app[SERVICE]

    async def pinned(name: str) -> store.Pinned | None:
        return await in_thread(ctx.engine, store.get_pinned, supervisors_t, name)

    body = await read_body(request, 0)
    supervisor, _, _ = await authenticate(
        service, pinned, "supervisor", request.method, request.raw_path, list(request.headers.items()), body
    )
    now = service.clock()
    # Versioned by time: a supervisor keeps no catalog history, it compares each one with a report.
    document = build_catalog(
        service.identity(),
        supervisor.name,
        offers_for(await service.own_offers(), Agreement()),
        now,
        now,
        service.settings.catalog_validity_s,
        None,
    )
    return web.Response(body=canonical.encode(document), content_type="application/json")


async def reports(request: web.Request) -> web.Response:
    """Accept one report from a registered node."""
    ctx, service = request.app[CTX], request.app[SERVICE]
    body = await read_body(request, MAX_REPORT_BYTES)
    answer = await ingest(
        service, ctx.engine, request.method, request.raw_path, list(request.headers.items()), body
    )
    return json_response(answer)


async def supervision_api(request: web.Request) -> web.Response:
    """`GET /api/v1/supervision`: national totals, nodes and flags (admin)."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    nodes = await in_thread(ctx.engine, store.latest_reports)
    service = request.app[SERVICE]
    return web.json_response(
        summary(nodes, ctx.name, service.clock(), ctx.settings.supervision.stale_intervals)
    )


def _int_query(request: web.Request, name: str, default: int | None, top: int) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= top:
        raise bad_request(f"{name} must be an integer from 1 to {top}", code="bad_query")
    return int(text)


async def history_api(request: web.Request) -> web.Response:
    """`GET /api/v1/supervision/nodes/{name}/history`: a registered node's reports (admin)."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    name = request.match_info["name"]
    try:
        check_node_name(name)
    except ValueError:
        raise bad_request(f"{name!r} is not a node name", code="bad_name") from None
    limit = _int_query(request, "limit", 50, MAX_HISTORY)
    before = _int_query(request, "before", None, 2**62)
    if await in_thread(ctx.engine, store.get_pinned, nodes_t, name) is None:
        raise ApiError(404, "unknown_node", f"no node called {name!r} is registered here")
    rows = await in_thread(ctx.engine, store.history, name, limit or 50, before)
    return web.json_response({"node": name, "count": len(rows), "reports": rows})


def add_node_routes(app: web.Application) -> None:
    """The route every node serving `/fed/v1` answers its supervisors on."""
    app.router.add_get("/fed/v1/supervision/catalog", supervisor_catalog)


def add_supervisor_routes(app: web.Application) -> None:
    """The routes of a supervisor."""
    app.router.add_post("/fed/v1/supervision/reports", reports)
    app.router.add_get("/api/v1/supervision", supervision_api)
    app.router.add_get("/api/v1/supervision/nodes/{name}/history", history_api)
