"""Business metrics of two real nodes that trade over HTTP, on SQLite and PostgreSQL: after an
order, a settlement and a local order the scraped orders, sales, reservations, revenue and spend
change as they should; a second replica over the same database answers the same numbers; a partner
that cannot be reached shows as `unreachable`."""

from __future__ import annotations

import time
from pathlib import Path

from federation import store
from federation.partners import Agreement, Partner
from federation.sync import run_round
from tests.support.federation import service_of
from tests.support.nodes import running_node
from tests.support.polling import eventually
from tests.support.scrape import Scrape, scrape
from tests.support.trading import PRICE, engine_of, market

FRESH = "\n[metrics]\ncache_s = 0\n"
UNITS, HOURS = 2, 3


def link(s: Scrape, partner: str) -> str:
    """The partner's link state as the one-hot `cpnode_partner_link` series say it."""
    states = [
        state
        for state in ("never", "ok", "rejected", "unreachable")
        if s.value("cpnode_partner_link", partner=partner, state=state) == 1.0
    ]
    assert len(states) == 1, states
    return states[0]


async def test_an_order_its_settlement_and_a_local_order_move_the_metrics(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Orders, sales, trades, reservations, revenue and spend follow one partner order from placed
    to settled, and a local order's settlement counts as revenue from the node's own pools."""
    async with market(tmp_path, db_urls, seller_extra=FRESH, buyer_extra=FRESH) as m:
        buyer, seller = await scrape(m.buyer.url), await scrape(m.seller.url)
        assert buyer.total("cpnode_orders") == seller.total("cpnode_sales") == 0
        assert link(buyer, "shanghai") == "ok"
        assert buyer.value("cpnode_partner_catalog_offers", partner="shanghai") == 2
        age = buyer.value("cpnode_partner_catalog_age_seconds", partner="shanghai")
        assert age is not None
        assert 0 <= age < 600
        assert seller.value("cpnode_pool_free_units", pool="pool-a", offer="shanghai-gpu") == 4
        assert seller.value("cpnode_pool_reserved_units", pool="pool-a", offer="shanghai-gpu") is None

        status, order = await m.order(UNITS, HOURS)
        assert status == 201, order
        amount = UNITS * HOURS * PRICE
        buyer, seller = await scrape(m.buyer.url), await scrape(m.seller.url)
        assert buyer.value("cpnode_orders", partner="shanghai", state="accepted") == 1
        assert buyer.value("cpnode_trades_total", partner="shanghai", side="buy") == 1
        assert (
            buyer.value("cpnode_open_trade_value_minor", partner="shanghai", side="buy", currency="CNY")
            == amount
        )
        assert seller.value("cpnode_sales", partner="beijing", state="accepted") == 1
        assert seller.value("cpnode_trades_total", partner="beijing", side="sell") == 1
        assert seller.value("cpnode_pool_reserved_units", pool="pool-a", offer="shanghai-gpu") == UNITS
        assert seller.total("cpnode_revenue_minor_total") == 0

        status, settled = await m.post(f"/api/v1/orders/{order['id']}/settle", {"used_hours": 2})
        assert status == 200, settled
        used = settled["settled_amount"]
        assert used == UNITS * 2 * PRICE
        buyer, seller = await scrape(m.buyer.url), await scrape(m.seller.url)
        assert buyer.value("cpnode_orders", partner="shanghai", state="settled") == 1
        assert buyer.value("cpnode_orders", partner="shanghai", state="accepted") is None
        assert buyer.value("cpnode_spend_minor_total", partner="shanghai", currency="CNY") == used
        assert buyer.total("cpnode_open_trade_value_minor") == 0
        assert seller.value("cpnode_sales", partner="beijing", state="settled") == 1
        assert seller.value("cpnode_revenue_minor_total", partner="beijing", currency="CNY") == used
        assert seller.value("cpnode_pool_reserved_units", pool="pool-a", offer="shanghai-gpu") is None

        status, local = await m.order(1, 1, offer_id="beijing-local", source="own:config")
        assert status == 201, local
        assert (await scrape(m.buyer.url)).value(
            "cpnode_pool_reserved_units", pool="local-a", offer="beijing-local"
        ) == 1
        status, done = await m.post(f"/api/v1/orders/{local['id']}/settle", {"used_hours": 1})
        assert status == 200, done
        buyer = await scrape(m.buyer.url)
        assert buyer.value("cpnode_orders", partner="", state="settled") == 1
        assert (
            buyer.value("cpnode_revenue_minor_total", partner="", currency="CNY")
            == done["settled_amount"]
            > 0
        )
        assert (
            buyer.value("cpnode_trades_total", partner="shanghai", side="buy") == 1
        )  # a local order is no trade

        # Another replica of the seller over the same database answers the same business numbers.
        async with running_node(m.seller.settings.base_dir / "node.toml", frozenset({"api"})) as replica:
            other = await scrape(replica.url)
        for name, labels in (
            ("cpnode_sales", {"partner": "beijing", "state": "settled"}),
            ("cpnode_revenue_minor_total", {"partner": "beijing", "currency": "CNY"}),
            ("cpnode_trades_total", {"partner": "beijing", "side": "sell"}),
            ("cpnode_pool_free_units", {"pool": "pool-a", "offer": "shanghai-gpu"}),
        ):
            assert other.value(name, **labels) == seller.value(name, **labels) is not None, name


async def test_an_unreachable_partner_shows_in_its_link_state(tmp_path: Path) -> None:
    """A partner whose address answers nothing reads `unreachable` with one failure after a sync round,
    and has no catalog age (no catalog is held from it)."""
    async with market(tmp_path, buyer_extra=FRESH) as m:
        assert m.seller.ctx is not None
        nowhere = Partner("nowhere", ("http://127.0.0.1:9",), m.seller.ctx.identity.public_key, Agreement())
        store.add_partner(engine_of(m.buyer), nowhere, int(time.time()))
        assert link(await scrape(m.buyer.url), "nowhere") == "never"
        results = {r.partner: r.outcome for r in await run_round(service_of(m.buyer), force=True)}
        assert results["nowhere"] == "unreachable", results

        async def shows_unreachable() -> bool:
            return link(await scrape(m.buyer.url), "nowhere") == "unreachable"

        await eventually(shows_unreachable, 20, "nowhere unreachable")
        s = await scrape(m.buyer.url)
        assert s.value("cpnode_partner_sync_failures", partner="nowhere") == 1
        assert s.value("cpnode_partner_catalog_age_seconds", partner="nowhere") is None
        assert link(s, "shanghai") == "ok"
