"""The tasks component: consumers' tasks delivered on this node's pools, wired into a running node.

- role `api`: the tasks API (node.tasks.routes);
- role `connectors` (the pools are hosted there): the driver, a lifecycle task that runs every
  unfinished task's actions while it holds the `tasks.driver` lease (node.tasks.driver).

Installed after the connectors, trading and market components: it calls the pools through the
plugin host, orders through trading's buyer, and matches demands over the node's offer sources.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.engine import Engine

from node.config import Settings
from node.context import NodeContext
from node.pools.component import HOST
from node.tasks import routes, store
from node.tasks.core import Tasks
from node.tasks.driver import Driver
from node.tasks.service import TaskService
from node.tasks.steps import TaskSteps
from node.trading.component import BUYER

TASKS = web.AppKey("tasks", Tasks)
DRIVER = web.AppKey("tasks_driver", Driver)


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the tasks API and, where pools are hosted, the driver."""
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
    if host is not None:
        driver = Driver(tasks, TaskSteps(tasks), ctx.replica_id, ("own",))
        app[DRIVER] = driver
    if "api" in ctx.roles:
        routes.add_routes(app, TaskService(tasks, driver.nudge if driver is not None else lambda _id: None))
    if driver is None:
        return
    running = driver

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        job = asyncio.create_task(running.run(), name="tasks driver")
        yield
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job

    app.cleanup_ctx.append(lifecycle)


def status_lines(settings: Settings, engine: Engine) -> list[tuple[str, object]]:
    """Lines for `cpnode status`: tasks by state."""
    try:
        counts = store.count_by_state(engine)
    except Exception as exc:  # status must answer even before the tables exist
        return [("tasks", f"unknown ({type(exc).__name__})")]
    return [("tasks", ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none")]
