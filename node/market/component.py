"""The market component (role `api`): `POST /api/v1/match`, and ordering by demand for
`POST /api/v1/orders` (node.trading.routes hands a `demand` body to it).

    POST /api/v1/match     a demand → {"matches": [...], "excluded": [...], "plan": [...] (split)}

Both take the admin token or a consumer's token, as `GET /api/v1/offers` does. Installed after
the trading component, whose buyer places the orders.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from node.context import CTX, NodeContext
from node.http.body import json_object
from node.market.demand import Demand, parse_demand
from node.market.errors import DemandError
from node.market.matching import MatchResult, match
from node.market.ordering import place_best, replayed
from node.market.view import market_offers
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


def install(app: web.Application, ctx: NodeContext) -> None:
    """Mount `POST /api/v1/match` and let trading place orders by demand."""
    if "api" not in ctx.roles:
        return
    buyer = app[BUYER]
    currency = ctx.settings.trading.currency

    async def matched(demand: Demand) -> MatchResult:
        offers = await market_offers(ctx.offer_sources, ctx.engine, int(time.time()))
        return match(demand, offers, currency)

    async def match_api(request: web.Request) -> web.Response:
        await request.app[CTX].authenticate(request)
        result = await matched(_checked(await json_object(request), currency))
        return web.json_response({"node": ctx.name, "currency": currency, **result.view()})

    async def place(consumer: str, demand: Any, request_id: str | None) -> tuple[int, dict[str, Any]]:
        wanted = _checked(demand, currency, prefix="demand")
        if request_id is not None:
            before = await replayed(buyer, wanted, consumer, request_id)
            if before is not None:
                return 200, before
        return 201, await place_best(buyer, await matched(wanted), consumer, request_id)

    app.router.add_post("/api/v1/match", match_api)
    placer: DemandOrders = place  # checks `place` against the protocol trading calls
    app[DEMAND_ORDERS] = placer
