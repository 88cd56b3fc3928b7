"""The tasks component: consumers' tasks delivered on this node's pools or by partners, and tasks
partners bought here, wired into a running node.

- role `api`: the tasks API (node.tasks.routes);
- role `federation`: the peer API of tasks (node.tasks.peer_routes), and the seller takes the task
  a trade request carries (node.tasks.sold);
- role `connectors` (the pools are hosted there): the driver, a lifecycle task that runs every
  unfinished task's actions while it holds the `tasks.driver` lease (node.tasks.driver).

Installed after the connectors, trading and market components: it calls the pools through the
plugin host, orders through trading's buyer, and matches demands over the node's offer sources.
A process without trading (only the `connectors` role) has no tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from connectors.stopping import stop_tasks
from node.context import NodeContext
from node.pools.routes import HOST
from node.tasks import peer_routes, routes, store
from node.tasks.core import Tasks
from node.tasks.driver import Driver
from node.tasks.records import TaskKind
from node.tasks.service import TaskService
from node.tasks.steps import TaskSteps
from node.trading.component import BUYER, SELLER

TASKS = web.AppKey("tasks", Tasks)
DRIVER = web.AppKey("tasks_driver", Driver)
KINDS: tuple[TaskKind, ...] = ("own", "remote", "sold")


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the tasks API, the peer API and, where pools are hosted, the driver."""
    if BUYER not in app:
        return
    host = app.get(HOST)
    tasks = Tasks(
        name=ctx.name,
        engine=ctx.engine,
        host=host,
        buyer=app[BUYER],
        offer_sources=ctx.offer_sources,
        settings=ctx.settings.tasks,
        data_dir=ctx.settings.data_dir,
    )
    app[TASKS] = tasks

    async def metered_by(order_id: str) -> str | None:
        return await tasks.db(store.task_of_order, order_id)

    tasks.buyer.metered_by = metered_by
    driver: Driver | None = None

    def nudge(task_id: str) -> None:
        if driver is not None:
            driver.nudge(task_id)

    steps = TaskSteps(tasks, nudge)
    if host is not None:
        driver = Driver(tasks, steps, ctx.replica_id, KINDS)
        app[DRIVER] = driver
    service = TaskService(tasks, steps.remote, nudge)
    app[routes.SERVICE] = service
    if "api" in ctx.roles:
        routes.add_routes(app)
    if "federation" in ctx.roles:
        app[SELLER].tasks = steps.sold
        peer_routes.add_routes(app)
    if driver is None:
        return
    running = driver

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        job = asyncio.create_task(running.run(), name="tasks driver")
        yield
        await stop_tasks([job], "the tasks driver")

    app.cleanup_ctx.append(lifecycle)
