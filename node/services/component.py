"""The services component: inference services' replicas and the steering entry, wired into a node.

Role `api`, installed after the tasks component (replicas are tasks): the services API
(node.services.routes), the steering entry `/svc/{name}/...` (node.services.proxy), and one
lifecycle job per process that refreshes the live state every `health_interval_s`
(node.services.runtime). The process that holds the `services.reconcile` lease also keeps every
service's replica count (node.services.core) and decides scale-out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from sqlalchemy.exc import DBAPIError

from connectors.stopping import stop_tasks
from node import leases
from node.context import NodeContext
from node.db.threads import in_thread
from node.migration.component import sites as pool_sites
from node.services import proxy, routes
from node.services.core import Services
from node.services.network import ViewLatencies
from node.services.runtime import Runtime
from node.services.settings import ServicesSection
from node.services.steering import Chain, LatencyTable
from node.tasks.routes import SERVICE

log = logging.getLogger(__name__)
LEASE = "services.reconcile"


def known_sites(settings: ServicesSection, pools: dict[str, str], table: LatencyTable) -> frozenset[str]:
    """The sites a user may name from the config: the pools', the partners', the latency table's,
    the node's (the network view's are known too, see Runtime.user_site)."""
    own = {settings.site} if settings.site else set()
    return frozenset({*pools.values(), *settings.partner_sites.values(), *table.sites, *own})


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the services API, the steering entry and the refresh job (role `api`, with tasks)."""
    if SERVICE not in app or "api" not in ctx.roles:
        return
    settings = ctx.settings.services
    services = Services(ctx.name, app[SERVICE])
    table = LatencyTable.from_config(settings.latency_ms)
    pools = pool_sites(ctx.settings)
    sites = known_sites(settings, pools, table)

    async def call(fn: object, *args: object) -> object:
        return await in_thread(ctx.engine, fn, *args)  # type: ignore[arg-type]

    network = ViewLatencies()  # the configured pairs first, then the network view
    runtime = Runtime(
        call,
        app[SERVICE],
        settings,
        Chain((table, network)),
        lambda: sites,
        pools,
        network=network,
        home_site=ctx.settings.network.site,
        observer=ctx.replica_id,
    )
    app[routes.SERVICES] = services
    app[proxy.RUNTIME] = runtime
    routes.add_routes(app)
    proxy.add_routes(app)

    async def rounds() -> None:
        ttl_ms = int(max(settings.health_interval_s * 5, 5) * 1000)
        while True:
            try:
                now = int(time.time() * 1000)
                holder = await in_thread(ctx.engine, leases.try_acquire, LEASE, ctx.replica_id, now, ttl_ms)
                runtime.grow = services.grow if holder else None
                if holder:
                    await services.reconcile()
                await runtime.refresh()
            except DBAPIError as exc:  # the database is down or failing over: the next round retries
                log.warning("services round skipped: the database is unavailable: %s", exc.orig or exc)
            except Exception:  # one bad round (a partner down, a bug) must not end the job
                log.exception("services round failed")
            await asyncio.sleep(settings.health_interval_s)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        runtime.http = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        job = asyncio.create_task(rounds(), name="services rounds")
        yield
        await stop_tasks([job], "the services rounds")
        await runtime.http.close()

    app.cleanup_ctx.append(lifecycle)
