"""Trading test helpers: a seller (shanghai) and a buyer (beijing), real nodes on 127.0.0.1 port 0
that pin each other, with offers, a funded consumer and the buyer's copy of the seller's catalog."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

import ledger
from federation import canonical, store
from federation.httpsig import sign_request
from federation.partners import Agreement, Partner
from federation.sync import ensure_session, run_round
from node.service import NodeServer
from node.trading.buyer import Buyer
from node.trading.component import BUYER, SELLER
from node.trading.seller import Seller
from tests.support.cli import CliResult, cpnode_async
from tests.support.federation import service_of
from tests.support.nodes import make_node_dir, offer_entry, running_node

BASE_TOML = """
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 3600
max_trades_in_flight = 1

[scheduler]
enabled = false
"""


PRICE = 10_000  # per unit-hour, minor units


FEE_BP = 500


def offer(node: str, name: str, free: int, price: int, pool: str = "pool-a") -> str:
    """One `[[offers]]` entry."""
    return offer_entry(f"{node}-{name}", node, free, price, pool=pool)


# The trade timeout of tests that do not test it: a seller in the test's event loop on a loaded
# machine took over 3 s to answer, and the order failed partner_unavailable. Tests of the timeout
# pass their own (1 s).
TRADE_TIMEOUT_S = 10.0


def trading_toml(fee_bp: int = FEE_BP, timeout_s: float = TRADE_TIMEOUT_S) -> str:
    """A `[trading]` section with short time limits for tests."""
    return f"\n[trading]\nplatform_fee_bp = {fee_bp}\ntrade_timeout_s = {timeout_s}\nrecover_every_s = 3600\n"


def buyer_of(server: NodeServer) -> Buyer:
    """The buyer side of an in-process node."""
    assert server._runner is not None
    return server._runner.app[BUYER]


def seller_of(server: NodeServer) -> Seller:
    """The seller side of an in-process node."""
    assert server._runner is not None
    return server._runner.app[SELLER]


def engine_of(server: NodeServer) -> Any:
    """The database engine of an in-process node."""
    assert server.ctx is not None
    return server.ctx.engine


def balances(server: NodeServer) -> dict[str, tuple[int, int, int, int]]:
    """Every account's (debits pending, debits posted, credits pending, credits posted)."""
    return {a.id: a.balance.as_tuple() for a in ledger.list_accounts(engine_of(server))}


def sale_values(trade_id: str, units: int = 1, partner: str = "beijing") -> dict[str, Any]:
    """The row of a new sale of `units` of offer shanghai-gpu for 1 hour at 10 per unit-hour."""
    return {
        "partner": partner,
        "trade_id": trade_id,
        "offer_id": "shanghai-gpu",
        "pool": "gpu",
        "units": units,
        "hours": 1,
        "price_per_unit_hour": 10,
        "currency": "CNY",
        "amount": 10 * units,
        "fee": 1,
        "request_sha256": "0" * 64,
        "acceptance": b"{}",
        "receipt_sha256": "1" * 64,
        "hold_expires_ts": 3600,
        "created_ts": 7,
        "updated_ts": 7,
    }


def order_values(
    order_id: str, amount: int = 10, consumer: str = "alice", created_ts: int = 0
) -> dict[str, Any]:
    """The row of a new order by `consumer` for one unit-hour of shanghai's offer shanghai-gpu."""
    return {
        "id": order_id,
        "consumer": consumer,
        "offer_id": "shanghai-gpu",
        "source": "partner:shanghai",
        "partner": "shanghai",
        "pool": "gpu",
        "units": 1,
        "hours": 1,
        "price_per_unit_hour": amount,
        "currency": "CNY",
        "amount": amount,
        "fee": 0,
        "request_sha256": "0" * 64,
        "notify_partner": False,
        "hold_expires_ts": 3600,
        "created_ts": created_ts,
        "updated_ts": created_ts,
    }


def legs(server: NodeServer, order_id: str) -> list[tuple[str, str, int]]:
    """(transfer id without the order id, kind, amount) of every ledger transfer of an order or
    trade, in sequence order (their ids all start with `ORDER_ID:`)."""
    query = sa.text("SELECT id, kind, amount FROM ledger_transfers WHERE id LIKE :prefix ORDER BY seq")
    with engine_of(server).connect() as conn:
        rows = conn.execute(query, {"prefix": order_id + ":%"}).all()
    return [(row.id.removeprefix(order_id), row.kind, row.amount) for row in rows]


@dataclass
class Market:
    """A seller and a buyer node that trade; admin HTTP sessions to each."""

    seller: NodeServer
    buyer: NodeServer
    seller_http: aiohttp.ClientSession
    buyer_http: aiohttp.ClientSession

    async def sync(self) -> None:
        """The buyer fetches the seller's current catalog now."""
        results = await run_round(service_of(self.buyer), force=True)
        assert all(r.outcome in ("ok", "unchanged") for r in results), results

    async def post(self, path: str, body: Any, node: str = "buyer") -> tuple[int, Any]:
        """POST JSON to a node's admin API; (status, JSON answer)."""
        http = self.buyer_http if node == "buyer" else self.seller_http
        async with http.post(path, json=body) as response:
            return response.status, await response.json()

    async def get(self, path: str, node: str = "buyer") -> tuple[int, Any]:
        """GET from a node's admin API; (status, JSON answer)."""
        http = self.buyer_http if node == "buyer" else self.seller_http
        async with http.get(path) as response:
            return response.status, await response.json()

    async def order(
        self, units: int = 2, hours: int = 3, offer_id: str = "shanghai-gpu", **extra: Any
    ) -> tuple[int, Any]:
        """Place an order for alice (a partner offer unless `source` says otherwise)."""
        body = {
            "consumer": "alice",
            "offer_id": offer_id,
            "source": "partner:shanghai",
            "units": units,
            "hours": hours,
        }
        return await self.post("/api/v1/orders", {**body, **extra})

    async def consumer(self, name: str = "alice") -> dict[str, Any]:
        """A consumer's balances at the buyer."""
        status, body = await self.get(f"/api/v1/consumers/{name}")
        assert status == 200, body
        return dict(body)


def pin(node: NodeServer, other: NodeServer, agreement: Agreement) -> None:
    """Make `node` pin `other` as a partner under `agreement` (what `cpnode partners add` does)."""
    assert node.ctx is not None
    assert other.ctx is not None
    partner = Partner(other.ctx.name, (other.url,), other.ctx.identity.public_key, agreement)
    store.add_partner(node.ctx.engine, partner, int(time.time()), replace=True)


def admin_session(server: NodeServer) -> aiohttp.ClientSession:
    """An HTTP session to a node with its admin token."""
    assert server.ctx is not None
    return aiohttp.ClientSession(server.url, headers={"Authorization": f"Bearer {server.ctx.admin_token}"})


@asynccontextmanager
async def market(
    tmp_path: Path,
    db_urls: tuple[str | None, str | None] = (None, None),
    *,
    credit_limit: int = 1_000_000,
    deposit: int = 500_000,
    seller_free: int = 4,
    seller_extra: str = "",
    seller_http_toml: str = "",
    buyer_extra: str = "",
    buyer_federation: str = "",
    timeout_s: float = TRADE_TIMEOUT_S,
    trades_in_flight: int = 1,
) -> AsyncIterator[Market]:
    """Start shanghai (seller) and beijing (buyer), pin each other, fund alice, sync the catalog.
    `buyer_federation` adds lines to the buyer's `[federation]` section, `seller_http_toml` to the
    seller's `[http]`; `trades_in_flight` is each node's `max_trades_in_flight` (1 here, so tests
    see the limit at work)."""
    base = BASE_TOML.replace("max_trades_in_flight = 1\n", f"max_trades_in_flight = {trades_in_flight}\n")
    async with AsyncExitStack() as stack:
        seller_config = make_node_dir(
            tmp_path,
            "shanghai",
            db_url=db_urls[0],
            extra_toml=base
            + trading_toml(timeout_s=timeout_s)
            + seller_extra
            + offer("shanghai", "gpu", seller_free, PRICE)
            + offer("shanghai", "cpu", 10, 500, pool="pool-b"),
        )
        if seller_http_toml:
            text = seller_config.read_text(encoding="utf-8")
            seller_config.write_text(
                text.replace("[http]\n", "[http]\n" + seller_http_toml, 1), encoding="utf-8"
            )
        buyer_config = make_node_dir(
            tmp_path,
            "beijing",
            db_url=db_urls[1],
            extra_toml=base.replace("[federation]\n", "[federation]\n" + buyer_federation)
            + trading_toml(timeout_s=timeout_s)
            + buyer_extra
            + offer("beijing", "local", 3, 2_000, pool="local-a"),
        )
        seller = await stack.enter_async_context(running_node(seller_config))
        buyer = await stack.enter_async_context(running_node(buyer_config))
        pin(seller, buyer, Agreement(credit_limit=credit_limit))
        pin(buyer, seller, Agreement())
        seller_http = await stack.enter_async_context(admin_session(seller))
        buyer_http = await stack.enter_async_context(admin_session(buyer))
        found = Market(seller, buyer, seller_http, buyer_http)
        await found.sync()
        status, body = await found.post("/api/v1/consumers", {"id": "alice"})
        assert status == 201, body
        if deposit:
            status, body = await found.post(
                "/api/v1/consumers/alice/deposits", {"amount": deposit, "id": "dep-alice-1"}
            )
            assert status == 201, body
        yield found


async def signed_post(
    m: Market, path: str, body: bytes, nonce: str | None = None
) -> tuple[dict[str, str], str]:
    """Headers of a POST the buyer signs to the seller (with its session token), and the URL."""
    service = service_of(m.buyer)
    partner = store.get_partner(engine_of(m.buyer), "shanghai")
    assert partner is not None
    token = await ensure_session(service, partner)
    url = m.seller.url + path
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    signed = sign_request(
        service.identity(),
        "POST",
        url,
        body,
        to="shanghai",
        now_ts=int(time.time()),
        headers=headers,
        nonce=nonce,
    )
    return signed, url


async def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    """POST exactly these bytes and headers; (status, parsed canonical JSON)."""
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        return response.status, canonical.decode(await response.read())


async def run_cli(m: Market, *args: str) -> CliResult:
    """`cpnode ARGS --config <buyer>` in a thread (the node serves in this loop)."""
    return await cpnode_async(*args, config=m.buyer.settings.base_dir / "node.toml")
