"""The supervision component: a node's reporting job (`scheduler` role) and the catalog route its
supervisors call (`federation` role); with the `supervisor` role, the report intake, the
supervision API and the catalog check job. Config supervisors are kept in the database."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from federation.server import SERVICE
from node.config import Settings
from node.context import NodeContext
from node.db import in_thread
from node.peering.component import PURGE_INTERVAL_S, PURGE_JOB
from node.supervision import store
from node.supervision.reporter import Reporter
from node.supervision.routes import add_node_routes, add_supervisor_routes
from node.supervision.supervisor import check_round

log = logging.getLogger("cpnode.supervision")
REPORT_JOB = "supervision.report"
CHECK_JOB = "supervision.check"
# How often the jobs look: reports are made when their interval passed, deliveries retried when
# their backoff ended, catalogs checked when a new report came in.
TICK_S = 5.0


def config_supervisors(settings: Settings) -> list[store.Pinned]:
    """The supervisors `[[supervisors]]` pins."""
    return [store.Pinned(s.name, s.url, s.key, source="config") for s in settings.supervisors]


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add supervision's routes, jobs and config sync to a node (after the federation component)."""
    service = app[SERVICE]
    if "federation" in ctx.roles:
        add_node_routes(app)
    if "scheduler" in ctx.roles:
        reporter = Reporter(
            service,
            ctx.engine,
            ctx.offer_sources,
            lambda: ctx.settings.node.region,
            lambda: ctx.settings.supervision,
        )

        async def report_job() -> None:
            await reporter.run_round()

        every = min(TICK_S, float(ctx.settings.supervision.report_interval_s))
        ctx.scheduler.add_interval_job(REPORT_JOB, report_job, every)
    if "supervisor" in ctx.roles:
        add_supervisor_routes(app)

        async def check_job() -> None:
            await check_round(service, ctx.engine, ctx.settings.supervision.check_interval_s)

        ctx.scheduler.add_interval_job(
            CHECK_JOB, check_job, min(TICK_S, ctx.settings.supervision.check_interval_s)
        )
        if "scheduler" not in ctx.roles:
            # Each report leaves its request's nonce behind; a supervisor-only process purges them
            # itself (the same job, and lease, as the federation component's under `scheduler`).
            async def purge_job() -> None:
                await service.purge_expired()

            ctx.scheduler.add_interval_job(PURGE_JOB, purge_job, PURGE_INTERVAL_S)

    async def reload_hook(new: Settings) -> None:
        await in_thread(ctx.engine, store.sync_config_supervisors, config_supervisors(new), int(time.time()))

    ctx.reload_hooks.append(reload_hook)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await reload_hook(ctx.settings)
        yield

    app.cleanup_ctx.append(lifecycle)
