"""The business metrics component (every role): adds them to the node's /metrics; on the scheduler,
samples pools' utilisation over time (node.telemetry.samples); on the API, serves the samples."""

from __future__ import annotations

import logging
import time
from functools import partial

from aiohttp import web

from node.config import Settings
from node.context import NodeContext
from node.db import in_thread
from node.telemetry import queries, routes
from node.telemetry.collector import BusinessMetrics
from node.telemetry.readings import OfferCapacity
from node.telemetry.samples import take_sample

SAMPLE_JOB = "telemetry.pool_samples"
log = logging.getLogger("cpnode.telemetry")


def declared_offers(settings: Settings) -> list[OfferCapacity]:
    """The offers the config declares, as capacity (their free units; no total)."""
    return [OfferCapacity(o.pool, o.region, o.id, o.free_units, None) for o in settings.offers]


def install(app: web.Application, ctx: NodeContext) -> None:
    """Serve business metrics in /metrics beside the HTTP ones (unless `metrics.business` is off),
    sample pools' use on the scheduler and serve the samples on the API."""
    section = ctx.settings.metrics
    if "scheduler" in ctx.roles:
        keep_s = section.pool_samples_keep_h * 3600

        async def sample_job() -> None:
            sampled = await in_thread(ctx.engine, take_sample, int(time.time()), keep_s)
            log.debug("sampled the use of %d pool(s)", sampled)

        ctx.scheduler.add_interval_job(SAMPLE_JOB, sample_job, section.pool_sample_every_s)
    if "api" in ctx.roles:
        routes.add_routes(app)
    if not section.business:
        return
    collector = BusinessMetrics(
        partial(queries.read, ctx.engine, declared_offers(ctx.settings)), section.cache_s, engine=ctx.engine
    )
    ctx.metrics.sources.append(collector)
