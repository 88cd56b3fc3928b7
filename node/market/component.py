"""The market component (role `api`): `POST /api/v1/match`, and ordering by demand for
`POST /api/v1/orders` (node.trading.routes hands a `demand` body to it).

    POST /api/v1/match     a demand → {"matches": [...], "excluded": [...], "plan": [...] (split)}

A demand that names a `strategy` is ranked by it (node.market.scheduled): its first matches
(`?limit=N`, 20 by default) carry their explanation, and the orders placed on it note the strategy (and version) that chose them.
A demand without one gets the market's matching (node.market.matching) worked out over the same
cached offer columns (node.market.column_match), so neither path reads the catalogs per demand.

Both take the admin token or a consumer's token, as `GET /api/v1/offers` does. Installed after
the trading component, whose buyer places the orders.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.context import CTX, NodeContext
from node.http.body import json_object
from node.market.demand import Demand, parse_demand
from node.market.errors import DemandError
from node.market.ordering import place_best, replayed
from node.market.scheduled import MAX_SHOWN, SHOWN, Scheduler
from node.trading.component import BUYER
from node.trading.routes import DEMAND_ORDERS, DemandOrders


def _checked(data: Any, currency: str, prefix: str = "") -> Demand:
    """The demand, with a currency other than the node's refused up front (no offer could match)."""
    try:
        demand = parse_demand(data)
        if demand.currency is not None and demand.currency != currency:
            raise DemandError("currency", f"this node trades in {currency}, not {demand.currency}")
    except DemandError as exc:
        if not prefix:
            raise
        field = prefix if exc.field == "demand" else f"{prefix}.{exc.field}"
        raise DemandError(field, exc.reason) from None
    return demand


def _limit(request: web.Request) -> int:
    """`?limit=N`: how many candidates an answer shows (1..MAX_SHOWN, default SHOWN)."""
    text = request.query.get("limit", str(SHOWN))
    if not text.isdigit() or not 1 <= int(text) <= MAX_SHOWN:
        raise DemandError("limit", f"must be an integer 1..{MAX_SHOWN}, got {text!r}")
    return int(text)


def install(app: web.Application, ctx: NodeContext) -> None:
    """Mount `POST /api/v1/match` and let trading place orders by demand."""
    if "api" not in ctx.roles:
        return
    buyer = app[BUYER]
    currency = ctx.settings.trading.currency
    scheduler = Scheduler(ctx.engine, ctx.offer_sources, currency)

    async def match_api(request: web.Request) -> web.Response:
        principal = await request.app[CTX].authenticate(request)
        demand = _checked(await json_object(request), currency)
        if demand.strategy is not None:
            placement = await scheduler.placement(demand, principal.consumer, _limit(request))
            return web.json_response({"node": ctx.name, "currency": currency, **placement.view()})
        result = await scheduler.matched(demand)
        return web.json_response({"node": ctx.name, "currency": currency, **result.view(_limit(request))})

    async def place(consumer: str, demand: Any, request_id: str | None) -> tuple[int, dict[str, Any]]:
        wanted = _checked(demand, currency, prefix="demand")
        if request_id is not None:
            before = await replayed(buyer, wanted, consumer, request_id)
            if before is not None:
                return 200, before
        if wanted.strategy is not None:
            return 201, await scheduler.order(buyer, wanted, consumer, request_id)
        return 201, await place_best(buyer, await scheduler.matched(wanted), consumer, request_id)

    app.router.add_post("/api/v1/match", match_api)
    placer: DemandOrders = place  # checks `place` against the protocol trading calls
    app[DEMAND_ORDERS] = placer
