"""Wires accounts into a node: the accounts API (role `api`), the peer routes partners use to tell
and ask about consumers' accounts (role `federation`), assertion authentication for partners'
consumers, the status check on every sync interval and the finishing of closes stopped half-way
(role `scheduler`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.engine import Engine

from connectors.stopping import stop_tasks
from federation.server import SERVICE
from node.accounts import closing, routes
from node.accounts.federated import (
    INTERCONNECT,
    STATUS_PATH,
    STATUSES_PATH,
    Interconnect,
    status_route,
    statuses_route,
)
from node.context import CTX, NodeContext
from node.db import in_thread

log = logging.getLogger("cpnode.accounts")
CHECK_JOB = "accounts-status-check"
CLOSES_JOB = "accounts-finish-closes"
STOPPED_CLOSE_MS = 60_000  # a close left `closing` this long has stopped half-way


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the accounts routes, assertion authentication, the status check job and the job that
    finishes closes stopped half-way."""
    interconnect = Interconnect(ctx, app[SERVICE]) if SERVICE in app else None
    if interconnect is not None:
        app[INTERCONNECT] = interconnect
        ctx.assertion_authenticator = interconnect.authenticate
    if "api" in ctx.roles:
        routes.add_routes(app)
    if interconnect is not None and "federation" in ctx.roles:
        app.router.add_post(STATUS_PATH, status_route)
        app.router.add_post(STATUSES_PATH, statuses_route)
    if interconnect is not None and "scheduler" in ctx.roles:
        every_s = ctx.settings.accounts.status_check_s or ctx.settings.federation.sync_interval_s

        async def check_job() -> None:
            changed = await interconnect.check_round()
            if changed:
                log.info("partners' consumers: %d account(s) changed status", changed)

        ctx.scheduler.add_interval_job(CHECK_JOB, check_job, every_s)
    if "api" in ctx.roles:
        app.cleanup_ctx.append(_closed_ledgers_check)
    if "scheduler" in ctx.roles:
        every_s = ctx.settings.federation.sync_interval_s

        async def closes_job() -> None:
            finished = await in_thread(ctx.engine, closing.finish_stopped, STOPPED_CLOSE_MS)
            if finished:
                log.warning("closes that had stopped half-way, now finished: %s", finished)

        ctx.scheduler.add_interval_job(CLOSES_JOB, closes_job, every_s)


async def _closed_ledgers_check(app: web.Application) -> AsyncIterator[None]:
    """Check once at start, in the background (a large ledger never delays listening)."""
    job = asyncio.create_task(_warn_closed_ledgers(app[CTX].engine), name="closed ledger check")
    yield
    await stop_tasks([job], "the closed ledger check")


async def _warn_closed_ledgers(engine: Engine) -> None:
    """Log each consumer an older database left active or suspended with its ledger account closed
    (node.accounts.closing), with what to do."""
    try:
        found = await in_thread(engine, closing.closed_ledger_consumers)
    except Exception as exc:  # a check at start must never keep the node from starting
        log.warning("could not check for consumers with a closed ledger account: %s", exc)
        return
    for item in found:
        log.warning(
            "consumer %s is %s but its ledger account is closed: %s",
            item.consumer,
            item.status,
            item.advice(),
        )
