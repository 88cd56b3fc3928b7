"""The migration component: task migration wired into a running node.

- role `api`: the migration routes under `/api/v1/migrations` (node.migration.routes);
- role `connectors` (the process that hosts the plugins): the driver of unfinished migrations
  (node.migration.driver), started and stopped with the app;
- role `federation`: the peer API partners use to move a program to this node's pools
  (node.migration.peer_routes).

Where the tasks service runs, a migration's cutover hook makes the migrated task follow its
program (node.tasks.migrated), and a partner's pool is bought through its buyer
(node.migration.partner).

Installed after the connectors component, whose plugin host it uses. Another component that
needs to know when a migration's cutover commits (the tasks service: a task record gets its new
instance) adds a hook: `app[CORE].hooks.append(hook)` (node.migration.core.CutoverHook).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from connectors.stopping import stop_tasks
from node.config import Settings
from node.context import NodeContext
from node.migration import peer_routes, routes
from node.migration.core import MigrationCore
from node.migration.driver import Driver
from node.migration.records import Migration
from node.migration.routes import CLOSING, CORE, KICK
from node.migration.steps import Steps
from node.pools.routes import HOST
from node.tasks import migrated
from node.tasks.component import TASKS
from node.tasks.delivery import Delivery
from node.tasks.finish import Finish

__all__ = ["CORE", "install", "sites"]


def sites(settings: Settings) -> dict[str, str]:
    """The network site of each pool: `[[pools]] site`, then `[migration] sites` for the others."""
    known = {pool.name: pool.site for pool in settings.pools if pool.site is not None}
    return {**known, **settings.migration.sites}


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the migration routes (role `api`) and the driver (where the plugins are hosted)."""
    settings = ctx.settings.migration
    host = app.get(HOST)
    core = MigrationCore(
        ctx.engine, settings, host, sites(ctx.settings), ctx.settings.path(settings.express_token_path)
    )
    app[CORE] = core
    tasks = app.get(TASKS)
    if tasks is not None:
        core.tasks = tasks
        finish = Finish(tasks, Delivery(tasks))

        async def follow_task(m: Migration) -> None:
            await migrated.follow(tasks, finish, m)

        core.hooks.append(follow_task)
        if "federation" in ctx.roles:
            peer_routes.add_routes(app)
    closing = app[CLOSING] = asyncio.Event()

    async def end_streams(_app: web.Application) -> None:
        closing.set()  # event streams end now instead of holding the shutdown

    app.on_shutdown.append(end_streams)
    if "api" in ctx.roles:
        routes.add_routes(app)
    if host is None:
        return
    driver = Driver(Steps(core), ctx.replica_id)
    app[KICK] = driver.kick

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        supervisor = asyncio.create_task(driver.supervise())
        yield
        await stop_tasks([supervisor], "the migration supervisor")
        await driver.close()
        await core.close()

    app.cleanup_ctx.append(lifecycle)
