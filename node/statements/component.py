"""The statements component: the API (role `api`), and in the `scheduler` role the leased job
`statements.issue`, which issues the month just closed for every consumer and partner account (once
the month is closed; issuing is idempotent, so a run that finds them issued writes nothing)."""

from __future__ import annotations

import logging
import time

from aiohttp import web

import ledger
from ledger.statement import CLOSE_MARGIN_MS, is_closed, period_of
from node.context import NodeContext
from node.db import in_thread
from node.identity import reload_if_rotated
from node.statements import routes, store

log = logging.getLogger("cpnode.statements")
ISSUE_JOB = "statements.issue"
ISSUE_EVERY_S = 3600.0


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the statements routes to a node that runs the `api` role."""
    if "api" in ctx.roles:
        routes.add_routes(app)


def last_closed_month(now_ms: int) -> str:
    """The latest month that is closed at `now_ms`."""
    month = period_of(now_ms - CLOSE_MARGIN_MS)
    year, number = (int(part) for part in month.split("-"))
    before = f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"
    return month if is_closed(month, now_ms) else before


def schedule(ctx: NodeContext) -> None:
    """Register the job that issues each closed month's statements (one replica at a time, by lease)."""

    async def issue_job() -> None:
        ctx.identity = reload_if_rotated(ctx.settings, ctx.identity)
        month = last_closed_month(int(time.time() * 1000))
        issued = await in_thread(
            ctx.engine, store.issue, ctx.identity.signing_key, ledger.origin_for(ctx.name), month
        )
        new = sum(1 for _, created in issued if created)
        if new:
            log.info("statements: %d issued for %s", new, month)

    ctx.scheduler.add_interval_job(ISSUE_JOB, issue_job, ISSUE_EVERY_S)
