"""The ledger component: the admin API (role `api`), and in the `scheduler` role the two leased jobs,
`ledger.checkpoint` (sign a checkpoint every N transfers or T seconds) and `ledger.sweep` (expire
holds whose deadline has passed). The ledger itself is plain functions over the node's engine and
its signing key; this module only hands them over."""

from __future__ import annotations

import logging

from aiohttp import web

import ledger
from node.context import NodeContext
from node.db import in_thread
from node.identity import reload_if_rotated
from node.settlement import audit_routes
from node.settlement.routes import add_routes

log = logging.getLogger("cpnode.ledger")
CHECKPOINT_JOB = "ledger.checkpoint"
SWEEP_JOB = "ledger.sweep"


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the ledger's routes to a node."""
    if "api" in ctx.roles:
        add_routes(app)
        audit_routes.add_routes(app)


def schedule(ctx: NodeContext) -> None:
    """Register the checkpoint and sweep jobs (each runs on one replica at a time, by lease)."""
    settings = ctx.settings.ledger
    origin = ledger.origin_for(ctx.name)

    async def checkpoint_job() -> None:
        ctx.identity = reload_if_rotated(ctx.settings, ctx.identity)  # sign with the current key
        made = await in_thread(
            ctx.engine,
            ledger.checkpoint_job,
            ctx.identity.signing_key,
            origin,
            every_transfers=settings.checkpoint_every_transfers,
            every_s=settings.checkpoint_every_s,
        )
        if made is not None:
            log.info("ledger checkpoint signed at size %d", made.size)

    async def sweep_job() -> None:
        expired = await in_thread(ctx.engine, ledger.sweep_job)
        if expired:
            log.info("ledger: %d hold(s) expired", len(expired))

    ctx.scheduler.add_interval_job(CHECKPOINT_JOB, checkpoint_job, settings.checkpoint_poll_s)
    ctx.scheduler.add_interval_job(SWEEP_JOB, sweep_job, settings.sweep_every_s)
