"""The trading component: buying from and selling to partners, wired into a running node.

- every process: the node's offer sources show free units minus reserved ones (node.trading.capacity),
  whose snapshot a lifecycle task refreshes;
- role `federation`: the seller's handlers behind `/fed/v1/trades` (and `/fed/v1/trades/batch`
  unless `accept_trade_batches` is off), `/fed/v1/trades/{id}/settlement`
  and `/fed/v1/ledger/summary`;
- role `api`: consumers, deposits, orders and sales under `/api/v1` (node.trading.routes);
- role `scheduler`: the leased job `trading.upkeep` finishing orders and sales left between states,
  re-delivering unacknowledged cancels and expiring sales past their deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from connectors.stopping import stop_tasks
from federation.server import PEER_HANDLERS, SERVICE, TRADE_BATCHES
from federation.settlement import PeerHandlers
from node.context import NodeContext
from node.trading import routes
from node.trading.buyer import Buyer
from node.trading.capacity import Capacity
from node.trading.core import Trading
from node.trading.exchange_metrics import ExchangeCounts
from node.trading.routes import BUYER
from node.trading.seller import Seller

__all__ = ["BUYER", "SELLER", "UPKEEP_JOB", "install"]
log = logging.getLogger("cpnode.trading")
UPKEEP_JOB = "trading.upkeep"
SELLER = web.AppKey("trading_seller", Seller)


def install(app: web.Application, ctx: NodeContext) -> None:
    """Wire trading into a node; installed after the federation and connectors components, whose
    service and offer sources it builds on."""
    service = app[SERVICE]
    capacity = Capacity(ctx.engine)
    capacity.wrap(ctx.offer_sources)
    trading = Trading(ctx.name, ctx.engine, service, capacity, ctx.settings.trading)
    buyer, seller = Buyer(trading), Seller(trading)
    ctx.metrics.registry.register(ExchangeCounts(buyer.steps.exchanges.counts))
    app[BUYER], app[SELLER] = buyer, seller  # the buyer also for processes without the API
    if "federation" in ctx.roles:
        service.trade_handler = seller.handle_trade
        service.trade_opener = seller.open_trade
        app[PEER_HANDLERS] = PeerHandlers(seller.handle_settlement, seller.handle_summary)
        app[TRADE_BATCHES] = ctx.settings.trading.accept_trade_batches
    if "api" in ctx.roles:
        routes.add_routes(app, buyer)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(capacity.keep_fresh())
        yield
        await stop_tasks([task], "the capacity refresh")

    app.cleanup_ctx.append(lifecycle)
    if "scheduler" in ctx.roles:

        async def upkeep() -> None:
            results = await asyncio.gather(buyer.upkeep(), seller.upkeep(), return_exceptions=True)
            touched = sum(r for r in results if isinstance(r, int))
            if touched:
                log.info("trading upkeep finished %d order(s) and sale(s)", touched)
            for result in results:  # one side's failure did not stop the other; the job reports it
                if isinstance(result, BaseException):
                    raise result

        ctx.scheduler.add_interval_job(UPKEEP_JOB, upkeep, ctx.settings.trading.recover_every_s)
