"""The network component: the view kept fresh by a scheduled job, and shown.

    GET  /api/v1/network           the stored view: sites, links (free bandwidth, latency, cost), errors
    GET  /api/v1/network/path?src=&dst=[&min_mbps=]   the best path between two sites
    POST /api/v1/network/refresh   read every network plugin's topology now (admin)

The refresh reads the plugins hosted by this process, so the job runs where the `connectors` and
`scheduler` roles run together (each tick takes the job's lease); every replica reads the stored view.
"""

from __future__ import annotations

from aiohttp import web

from federation.store import list_partners
from node.context import CTX, NodeContext
from node.db import in_thread
from node.http.errors import ApiError
from node.network.refresh import refresh
from node.network.store import load_view
from node.network.view import NetworkView, UnknownSite
from node.pools.routes import HOST


def install(app: web.Application, ctx: NodeContext) -> None:
    """Mount the network routes (role `api`) and the refresh job (roles `connectors` + `scheduler`)."""
    settings = ctx.settings.network
    currency = ctx.settings.trading.currency  # link costs are in the node's trading currency
    hosts_plugins = "connectors" in ctx.roles

    async def refreshed() -> NetworkView:
        host = app.get(HOST) if hosts_plugins else None
        partners = await in_thread(ctx.engine, list_partners)
        return await refresh(ctx.engine, host, partners, settings)

    async def job() -> None:
        await refreshed()

    if hosts_plugins and "scheduler" in ctx.roles:
        ctx.scheduler.add_interval_job("network-view", job, settings.refresh_s)
    if "api" not in ctx.roles:
        return

    async def current() -> NetworkView:
        stored = await in_thread(ctx.engine, load_view)
        if stored is None and hosts_plugins:
            stored = await refreshed()
        return stored or NetworkView()

    async def show(request: web.Request) -> web.Response:
        await request.app[CTX].authenticate(request)
        view = await current()
        return web.json_response(
            {"node": ctx.name, "site": settings.site, "currency": currency, **view.view()}
        )

    async def path(request: web.Request) -> web.Response:
        await request.app[CTX].authenticate(request)
        query = request.query
        src, dst, floor = query.get("src"), query.get("dst"), query.get("min_mbps", "0")
        if not src or not dst:
            raise ApiError(400, "bad_request", "give both src and dst sites")
        if not floor.isdigit():
            raise ApiError(400, "bad_request", f"min_mbps must be a non-negative integer, got {floor!r}")
        view = await current()
        try:
            route = view.path(src, dst, int(floor))
        except UnknownSite as exc:
            raise ApiError(404, "unknown_site", str(exc), site=exc.site) from None
        if route is None:
            raise ApiError(409, "no_path", f"no path from {src} to {dst} with {floor} Mbit/s free")
        return web.json_response({**route.view(), "latency_ms": route.latency_ms, "currency": currency})

    async def refresh_now(request: web.Request) -> web.Response:
        request.app[CTX].require_admin(request)
        if not hosts_plugins:
            raise ApiError(503, "network_unavailable", "this process does not host the network plugins")
        view = await refreshed()
        return web.json_response(
            {"node": ctx.name, "site": settings.site, "currency": currency, **view.view()}
        )

    app.router.add_get("/api/v1/network", show)
    app.router.add_get("/api/v1/network/path", path)
    app.router.add_post("/api/v1/network/refresh", refresh_now)
