"""A hostile seller (a real node behind a proxy that corrupts its trade answers) next to an honest
one: every bad answer is a definite outcome for the buyer (502 bad_partner_answer, the order
cancelled, the consumer's money released, no retries), and upkeep finishes the hostile partner's
orders and still delivers the cancel owed to the honest partner in the same round."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from federation import store
from federation.partners import Agreement, Partner
from node.service import NodeServer
from node.trading import reservations
from node.trading import store as trading_store
from node.trading.buyer import OrderTerms
from node.trading.component import UPKEEP_JOB
from tests.support.nodes import make_node_dir, running_node
from tests.support.trading import (
    BASE_TOML,
    buyer_of,
    engine_of,
    market,
    offer,
    pin,
    seller_of,
    trading_toml,
)
from tests.trading.hostile import HostileProxy

BAD_MODES = ("deep", "forged", "huge", "garbage")
CHEAP = 100  # the hostile partner's offer ranks first in matching


def pin_at(node: NodeServer, other: NodeServer, url: str) -> None:
    """Make `node` pin `other` as a partner reached at `url` (its proxy)."""
    assert node.ctx is not None
    assert other.ctx is not None
    partner = Partner(other.ctx.name, (url,), other.ctx.identity.public_key, Agreement())
    store.add_partner(node.ctx.engine, partner, int(time.time()), replace=True)


# The trade timeout: a seller in this test's event loop on a loaded machine answers a trade in over
# a second, and a late answer is partner_unavailable, not the bad answer each mode must give.
ANSWER_S = 5.0


@asynccontextmanager
async def proxied(node: NodeServer) -> AsyncIterator[HostileProxy]:
    """A proxy in front of `node`, which takes the proxy's origin as its own while it runs."""
    assert node.ctx is not None
    proxy = HostileProxy(node.url)
    await proxy.start()
    node.ctx.base_url = proxy.url
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_bad_answers_are_definite_and_upkeep_isolates_partners(tmp_path: Path) -> None:  # noqa: PLR0915 (one scenario)
    """Deep, forged, oversized and garbage answers each give the consumer a 502 bad_partner_answer
    with the order cancelled and the money back, after one request each (trade, then cancel); an
    order of the hostile partner left `requested` and a cancel owed to the honest partner are both
    finished by one upkeep round."""
    async with (
        market(tmp_path, timeout_s=ANSWER_S, buyer_federation="max_catalog_bytes = 65536\n") as m,
        AsyncExitStack() as stack,
    ):
        honest = await stack.enter_async_context(proxied(m.seller))
        pin_at(m.buyer, m.seller, honest.url)
        config = make_node_dir(
            tmp_path,
            "hangzhou",
            extra_toml=BASE_TOML + trading_toml(timeout_s=ANSWER_S) + offer("hangzhou", "gpu", 10, CHEAP),
        )
        hangzhou = await stack.enter_async_context(running_node(config))
        hostile = await stack.enter_async_context(proxied(hangzhou))
        pin(hangzhou, m.buyer, Agreement(credit_limit=1_000_000))
        pin_at(m.buyer, hangzhou, hostile.url)
        await m.sync()

        honest.mode = "down"
        status, body = await m.order(1, 1)
        assert (status, body["error"]) == (409, "partner_unavailable"), body
        owed = body["order"]["id"]
        assert body["order"]["notify_partner"] is True
        honest.mode = "pass"
        full = (await m.consumer())["available"]

        for number, mode in enumerate(BAD_MODES, 1):
            hostile.mode = mode
            status, body = await m.order(1, 1, offer_id="hangzhou-gpu", source="partner:hangzhou")
            assert (status, body["error"]) == (502, "bad_partner_answer"), (mode, body)
            order = body["order"]
            assert (order["state"], order["notify_partner"]) == ("cancelled", False), (mode, order)
            assert order["reason"].startswith("bad_partner_answer:"), order["reason"]
            assert (await m.consumer())["available"] == full, mode
            assert hostile.corrupted == 2 * number, mode  # the trade and the cancel, never retried

        # Ordering by demand moves on from the hostile partner's best match to the next offer.
        demand = {"units": 1, "hours": 1, "sources": ["partner"]}
        status, body = await m.post("/api/v1/orders", {"consumer": "alice", "demand": demand})
        assert status == 201, body
        assert [(t["offer_id"], t["outcome"]) for t in body["tried"]] == [
            ("hangzhou-gpu", "bad_partner_answer"),
            ("shanghai-cpu", "accepted"),
        ]
        status, cancelled = await m.post(f"/api/v1/orders/{body['orders'][0]['id']}/cancel", {})
        assert (status, cancelled["state"]) == (200, "cancelled")

        buyer = buyer_of(m.buyer)
        _, left = await buyer._create(
            OrderTerms("beijing.leftover0000", "sha", "alice", "hangzhou-gpu", "partner:hangzhou", 1, 1, None)
        )
        moved = await buyer.steps.step(left)
        assert moved is not None
        left = moved
        assert left.state == "requested"
        hostile.mode = "deep"
        real_clock = buyer.trading.clock
        buyer.trading.clock = lambda: real_clock() + 3600
        try:
            # What the round finds: the order left requested and the cancel owed, nothing else.
            now = buyer.trading.clock()
            stale = now - int(3 * buyer.trading.settings.trade_timeout_s)
            found = (
                [(o.id, o.state) for o in await buyer.trading.db(trading_store.unfinished_orders, stale)],
                [(o.id, o.state) for o in await buyer.trading.db(trading_store.orders_to_notify)],
            )
            assert found == ([(left.id, "requested")], [(owed, "cancelled")]), found
            assert await buyer.upkeep() == 2
        finally:
            buyer.trading.clock = real_clock
        left = await buyer.get(left.id)
        assert (left.state, left.notify_partner) == ("cancelled", False)
        assert left.reason is not None
        assert left.reason.startswith("bad_partner_answer:")
        delivered = await buyer.get(owed)
        assert delivered.notify_partner is False
        sale = trading_store.get_sale(engine_of(m.seller), "beijing", owed)
        assert sale is not None
        assert sale.state == "cancelled"
        assert (await m.consumer())["available"] == full == 500_000
        # The hostile seller acted on every request it got: each trade it accepted was then voided.
        sales = trading_store.list_sales(engine_of(hangzhou), "beijing")
        assert len(sales) == len(BAD_MODES) + 2  # and the demand order, and the one left requested
        assert {s.state for s in sales} == {"voided"}
        assert reservations.reserved_units(engine_of(hangzhou), int(time.time())) == {}


async def test_the_upkeep_job_runs_the_seller_side_when_the_buyer_side_fails(tmp_path: Path) -> None:
    """One side of `trading.upkeep` failing neither skips the other nor hides the failure: the job
    reports an error after both ran."""
    async with market(tmp_path) as m:
        assert m.buyer.ctx is not None
        buyer, seller = buyer_of(m.buyer), seller_of(m.buyer)
        ran: list[str] = []

        async def failing() -> int:
            ran.append("buyer")
            raise RuntimeError("the buyer side broke")

        async def counting() -> int:
            ran.append("seller")
            return 0

        buyer.upkeep = failing  # type: ignore[method-assign]
        seller.upkeep = counting  # type: ignore[method-assign]
        assert await m.buyer.ctx.scheduler.run_job(UPKEEP_JOB) == "error"
        assert sorted(ran) == ["buyer", "seller"]
