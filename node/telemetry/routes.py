"""Light reads for dashboards (the console's overview and pools pages, operators' scripts):

GET /api/v1/pools/utilisation[?since_ts=T&pool=P]  each pool's sampled use over time (the
                                                   scheduler's samples, node.telemetry.samples);
                                                   the last 6 hours by default
GET /api/v1/partners/links                         every partner's link state, last error and
                                                   catalog head, with counts by link state, and
                                                   the latest catalog alerts (`/api/v1/partners`
                                                   has the full records)
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from federation.store import catalog_events
from node.context import CTX
from node.db import in_thread
from node.http.errors import bad_request
from node.telemetry import queries
from node.telemetry.readings import PartnerReading
from node.telemetry.samples import series

DEFAULT_WINDOW_S = 6 * 3600
ALERTS_READ, ALERTS_LISTED = 500, 5  # events read to find the latest alerts among accepted ones


async def pool_utilisation(request: web.Request) -> web.Response:
    """Each pool's samples since `since_ts` (UTC seconds), oldest first."""
    ctx = request.app[CTX]
    now = int(time.time())
    try:
        since = int(request.query.get("since_ts", now - DEFAULT_WINDOW_S))
    except ValueError:
        raise bad_request("since_ts: UTC seconds", code="bad_since") from None
    if since < 0:
        raise bad_request("since_ts: UTC seconds", code="bad_since")
    pool = request.query.get("pool") or None
    found = await in_thread(ctx.engine, series, since, pool)
    section = ctx.settings.metrics
    return web.json_response(
        {
            "pools": found,
            "since_ts": since,
            "every_s": section.pool_sample_every_s,
            "keep_h": section.pool_samples_keep_h,
        }
    )


async def partner_links(request: web.Request) -> web.Response:
    """Every partner's link state, failures, last error, catalog version, offers and age."""
    ctx = request.app[CTX]
    now = int(time.time())

    def read() -> tuple[list[PartnerReading], list[dict[str, Any]]]:
        with ctx.engine.connect() as conn:
            links = queries.partner_links(conn)
        events = catalog_events(ctx.engine, None, ALERTS_READ)
        return links, [e for e in events if e["kind"] != "accepted"][:ALERTS_LISTED]

    links, alerts = await in_thread(ctx.engine, lambda _engine: read())
    counts: dict[str, int] = {}
    for link in links:
        counts[link.link] = counts.get(link.link, 0) + 1
    return web.json_response(
        {
            "partners": [
                {
                    "name": r.name,
                    "status": r.link,
                    "failures": r.failures,
                    "last_error": r.last_error,
                    "last_success_ts": r.last_success_ts,
                    "catalog_version": r.catalog_version,
                    "catalog_age_s": None
                    if r.catalog_received_ts is None
                    else max(now - r.catalog_received_ts, 0),
                    "offers": r.catalog_offers or 0,
                }
                for r in links
            ],
            "counts": counts,
            "alerts": alerts,
        }
    )


def add_routes(app: web.Application) -> None:
    """Mount the dashboards' routes."""
    app.router.add_get("/api/v1/pools/utilisation", pool_utilisation)
    app.router.add_get("/api/v1/partners/links", partner_links)
