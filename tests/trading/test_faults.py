"""Faults between the two nodes: replayed and duplicated signed messages, a seller offline before or
after it accepted, an acceptance that never arrives, concurrent orders on one consumer and on one
offer, and clock skew. In every case no money is lost or charged twice and both ledgers agree."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import ledger
from federation import canonical, server, trades
from federation.partners import Agreement
from node.config import load_settings
from node.service import NodeServer
from node.trading import documents, reservations
from node.trading import store as trading_store
from node.trading.buyer import OrderTerms
from node.trading.opening import SaleOpening
from tests.support.federation import service_of
from tests.support.polling import eventually
from tests.support.trading import (
    Market,
    balances,
    buyer_of,
    engine_of,
    legs,
    market,
    pin,
    seller_of,
    send,
    signed_post,
)

FAR_FUTURE_MS = (int(time.time()) + 400 * 24 * 3600) * 1000


def answered_by_handler(m: Market) -> None:
    """Have the seller answer its trades from its trade handler, after the claim (as it does a trade
    carrying a task), instead of with the claim: so a fault put in the handler is met."""
    service = service_of(m.seller)
    opener = service.trade_opener
    assert opener is not None

    async def opening(partner: Any, document: dict[str, Any], request_sha: str) -> Any:
        found = await opener(partner, document, request_sha)
        if isinstance(found, SaleOpening):
            found.answers = False
        return found

    service.trade_opener = opening


def _summaries_agree(m: Market, trade_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both nodes' summary entries for one trade (the reconciliation diff compares these)."""
    now_ms = int(time.time() * 1000)
    window = ledger.Window(now_ms - 3_600_000, now_ms + 1)
    ours = ledger.parse_summary(
        ledger.summary_for_partner(engine_of(m.buyer), "beijing", "shanghai", window, margin_ms=0)
    )
    theirs = ledger.parse_summary(
        ledger.summary_for_partner(engine_of(m.seller), "shanghai", "beijing", window, margin_ms=0)
    )
    assert ledger.diff_summaries(ours, theirs) == []
    return ours.trades[trade_id].to_dict(), theirs.trades[trade_id].to_dict()


async def test_replayed_and_duplicated_messages(tmp_path: Path) -> None:
    """An exact replay is refused (401 replayed); a duplicated trade request or settlement gets the
    stored answer and records nothing twice; other content under a used id is refused."""
    async with market(tmp_path) as m:
        status, order = await m.order(1, 2)
        assert status == 201, order
        trade = order["id"]
        stored = await buyer_of(m.buyer).get(trade)
        assert stored.trade_request is not None
        before = legs(m.seller, trade)
        headers, url = await signed_post(m, "/fed/v1/trades", stored.trade_request)
        first = await send(url, stored.trade_request, headers)
        assert first[0] == 201  # a duplicate (new signature) gets the stored acceptance
        assert first[1] == canonical.decode(stored.receipt or b"")["acceptance"]
        assert await send(url, stored.trade_request, headers) == (
            401,
            {"error": "replayed", "message": "nonce already used (replayed request)"},
        )
        assert legs(m.seller, trade) == before
        # The same trade id with other content is a conflict; another node's trade id is refused.
        request = canonical.decode(stored.trade_request)
        other = documents.trade_request(
            service_of(m.buyer).identity(),
            "shanghai",
            trade,
            documents.Terms("shanghai-gpu", 2, 2, 10_000, "CNY", 40_000),
            1,
        )
        headers, url = await signed_post(m, "/fed/v1/trades", canonical.encode(other))
        assert (await send(url, canonical.encode(other), headers))[0] == 409
        foreign = documents.trade_request(
            service_of(m.buyer).identity(),
            "shanghai",
            "shanghai.deadbeef00",
            documents.Terms(**{**_terms(request), "units": 1}),
            1,
        )
        headers, url = await signed_post(m, "/fed/v1/trades", canonical.encode(foreign))
        status, refusal = await send(url, canonical.encode(foreign), headers)
        assert (status, refusal["error"], refusal["type"]) == (
            422,
            "foreign_trade_id",
            documents.REFUSAL_TYPE,
        )

        status, settled = await m.post(f"/api/v1/orders/{trade}/settle", {"used_hours": 1})
        assert status == 200, settled
        stored = await buyer_of(m.buyer).get(trade)
        assert stored.settlement is not None
        after_settle = (legs(m.seller, trade), balances(m.seller))
        path = f"/fed/v1/trades/{trade}/settlement"
        headers, url = await signed_post(m, path, stored.settlement)
        status, receipt = await send(url, stored.settlement, headers)
        assert (status, receipt) == (200, canonical.decode(stored.settlement_record or b"")["receipt"])
        assert (await send(url, stored.settlement, headers))[0] == 401
        different = documents.settlement(
            service_of(m.buyer).identity(), "shanghai", trade, 2, 20_000, "CNY", order["receipt_sha256"], 5
        )
        headers, url = await signed_post(m, path, canonical.encode(different))
        status, refusal = await send(url, canonical.encode(different), headers)
        assert (status, refusal["error"]) == (409, "already_settled")
        assert (legs(m.seller, trade), balances(m.seller)) == after_settle
        # A settlement whose URL names another trade is malformed.
        headers, url = await signed_post(m, "/fed/v1/trades/beijing.other0000/settlement", stored.settlement)
        status, error = await send(url, stored.settlement, headers)
        assert (status, error["error"]) == (400, "trade_id_mismatch")


def _terms(request: dict[str, Any]) -> dict[str, Any]:
    item = request["items"][0]
    return {k: item[k] for k in ("offer_id", "units", "hours", "price_per_unit_hour", "currency", "amount")}


async def test_seller_offline_before_the_request(tmp_path: Path) -> None:
    """With the seller down the order is cancelled (hold voided, money back); once the seller is back
    the pending cancel is delivered, and the late trade request is refused."""
    async with market(tmp_path, timeout_s=4.0) as m:
        await m.seller.stop()
        status, body = await m.order(1, 1)
        assert (status, body["error"], body["order"]["state"]) == (409, "partner_unavailable", "cancelled")
        trade = body["order"]["id"]
        assert body["order"]["notify_partner"] is True
        assert [kind for _, kind, _ in legs(m.buyer, trade)] == ["pending", "void"]
        assert (await m.consumer())["available"] == 500_000
        # The seller comes back (on a new port): the upkeep job delivers the cancel.
        assert m.seller.ctx is not None
        seller = NodeServer(load_settings(m.seller.settings.base_dir / "node.toml", environ={}))
        await seller.start()
        try:
            pin(m.buyer, seller, Agreement())
            m.seller = seller
            delivered = 0

            async def cancel_delivered() -> bool:  # a round the loaded seller answers late is tried again
                nonlocal delivered
                delivered += await buyer_of(m.buyer).upkeep()
                return delivered >= 1

            await eventually(cancel_delivered, what="the pending cancel delivered")
            assert delivered == 1
            order = await buyer_of(m.buyer).get(trade)
            assert order.notify_partner is False
            sale = trading_store.get_sale(engine_of(seller), "beijing", trade)
            assert sale is not None
            assert sale.state == "cancelled"
            assert order.trade_request is not None
            headers, url = await signed_post(m, "/fed/v1/trades", order.trade_request)
            status, refusal = await send(url, order.trade_request, headers)
            assert (status, refusal["error"]) == (409, "trade_cancelled")
            assert legs(seller, trade) == []
        finally:
            await seller.stop()


async def test_acceptance_lost_in_transit(
    tmp_path: Path, db_urls: tuple[str | None, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seller accepts (its answer stored) but the answer does not arrive in time: the buyer
    cancels with it, learns the acceptance from the cancel's receipt, and both ledgers show the trade
    accepted then voided. (The cancel is given a quarter of the trade timeout: 4 s leaves it 1 s on a
    loaded machine.)"""
    async with market(tmp_path, db_urls, timeout_s=4.0) as m:
        real, gate = trades.handle_trade, asyncio.Event()

        async def slow(service: Any, caller: Any, body: bytes) -> tuple[int, bytes]:
            answer = await real(service, caller, body)
            await gate.wait()
            return answer

        monkeypatch.setattr(server, "handle_trade", slow)
        try:
            status, body = await m.order(1, 1)
        finally:
            gate.set()
        assert (status, body["error"]) == (409, "partner_unavailable")
        trade = body["order"]["id"]
        assert body["order"]["state"] == "cancelled"
        assert body["order"]["notify_partner"] is False
        assert body["order"]["receipt_sha256"] is not None
        assert [kind for _, kind, _ in legs(m.buyer, trade)] == ["pending", "pending", "void", "void"]
        assert [kind for _, kind, _ in legs(m.seller, trade)] == ["pending", "pending", "void", "void"]
        mine, theirs = _summaries_agree(m, trade)
        assert (mine["state"], theirs["state"], mine["digest"]) == ("voided", "voided", theirs["digest"])
        assert (await m.consumer())["available"] == 500_000
        assert balances(m.seller)["partner:beijing"][:3] == (0, 0, 0)


async def test_seller_slow_to_store_its_acceptance(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """The seller holds the partner's money but has not stored its answer (the sale moves to
    `accepted` with it) when the buyer gives up: the buyer's cancel is answered 429 and kept to
    deliver, and once the seller has answered, re-delivering it voids both sides' holds."""
    async with market(tmp_path, db_urls, timeout_s=4.0) as m:
        answered_by_handler(m)
        service = service_of(m.seller)
        real, gate = service.trade_handler, asyncio.Event()
        assert real is not None

        async def slow(partner: Any, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            answer = await real(partner, document)
            await gate.wait()
            return answer

        service.trade_handler = slow
        try:
            status, body = await m.order(1, 1)
            trade = body["order"]["id"]
            assert (status, body["error"]) == (409, "partner_unavailable")
            assert (body["order"]["state"], body["order"]["notify_partner"]) == ("cancelled", True)
            sale = trading_store.get_sale(engine_of(m.seller), "beijing", trade)
            assert sale is not None
            assert sale.state == "open"
        finally:
            gate.set()

        async def acknowledged() -> bool:
            await buyer_of(m.buyer).upkeep()
            return (await buyer_of(m.buyer).get(trade)).notify_partner is False

        await eventually(acknowledged, what="the cancel acknowledged")
        sale = trading_store.get_sale(engine_of(m.seller), "beijing", trade)
        assert sale is not None
        assert sale.state == "voided"
        assert [kind for _, kind, _ in legs(m.seller, trade)] == ["pending", "pending", "void", "void"]
        # The consumer's hold voided when it gave up; the partner hold recorded and voided on learning
        # of the acceptance.
        assert [leg for leg, _, _ in legs(m.buyer, trade)] == [
            ":hold",
            ":hold:void",
            ":escrow",
            ":escrow:void",
        ]
        mine, theirs = _summaries_agree(m, trade)
        assert (mine["state"], theirs["state"], mine["digest"]) == ("voided", "voided", theirs["digest"])
        assert (await m.consumer())["available"] == 500_000
        assert balances(m.seller)["partner:beijing"][:3] == (0, 0, 0)


async def test_seller_offline_after_accepting(tmp_path: Path) -> None:
    """The seller goes down after accepting: cancelling voids the buyer's holds at once, and the
    seller's holds expire at their deadline; no money moved on either side."""
    async with market(tmp_path, timeout_s=3.0) as m:
        status, order = await m.order(2, 1)
        assert status == 201, order
        seller_side = seller_of(m.seller)
        await m.seller.stop()
        status, cancelled = await m.post(f"/api/v1/orders/{order['id']}/cancel", {})
        assert (status, cancelled["state"], cancelled["notify_partner"]) == (200, "cancelled", True)
        assert (await m.consumer())["available"] == 500_000
        expired = ledger.sweep_job(engine_of(m.seller), now=FAR_FUTURE_MS)
        assert sorted(str(t.pending_id) for t in expired) == [
            f"{order['id']}:sale:fee",
            f"{order['id']}:sale:provider",
        ]
        seller = balances(m.seller)
        assert seller["partner:beijing"] == (0, 0, 0, 1_000_000)
        assert seller["provider:pool-a"] == (0, 0, 0, 0)
        assert await seller_side.upkeep() == 0  # its deadline has not come by the seller's clock
        seller_side.trading.clock = lambda: FAR_FUTURE_MS // 1000
        assert await seller_side.upkeep() == 1
        sale = trading_store.get_sale(engine_of(m.seller), "beijing", order["id"])
        assert sale is not None
        assert sale.state == "expired"
        assert reservations.reserved_units(engine_of(m.seller), int(time.time())) == {}


async def test_concurrent_orders_never_overdraw(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Concurrent orders on one consumer take at most what it has (the ledger refuses the rest), and
    concurrent orders on one offer take at most its free units."""
    async with market(tmp_path, db_urls, deposit=25_000) as m:
        results = await asyncio.gather(*(m.order(1, 1) for _ in range(6)))  # 10,000 each
        accepted = [body for status, body in results if status == 201]
        refused = [body["error"] for status, body in results if status != 201]
        assert len(accepted) == 2
        assert refused == ["insufficient_funds"] * 4
        alice = await m.consumer()
        assert (alice["held"], alice["available"]) == (20_000, 5_000)
        assert balances(m.seller)["partner:beijing"][0] == 20_000
        assert (await m.post("/api/v1/consumers/alice/deposits", {"amount": 100_000, "id": "dep-2"}))[
            0
        ] == 201
        local = await asyncio.gather(
            *(m.order(1, 1, offer_id="beijing-local", source="own:config") for _ in range(6))
        )  # 3 free units
        assert sorted(status for status, _ in local) == [201] * 3 + [409] * 3
        assert {body["error"] for status, body in local if status == 409} == {"not_enough_free_units"}
        alice = await m.consumer()
        assert alice["available"] == 125_000 - 20_000 - 3 * 2_000
        assert alice["available"] >= 0


async def test_seller_clock_45_seconds_ahead(tmp_path: Path) -> None:
    """A seller whose clock runs 45 s ahead still accepts and settles (signatures allow ±60 s)."""
    async with market(tmp_path) as m:
        skewed = lambda: int(time.time()) + 45  # noqa: E731
        service_of(m.seller).clock = skewed
        seller_of(m.seller).trading.clock = skewed
        status, order = await m.order(1, 2)
        assert status == 201, order
        status, settled = await m.post(f"/api/v1/orders/{order['id']}/settle", {"used_hours": 2})
        assert (status, settled["state"]) == (200, "settled")
        _summaries_agree(m, order["id"])


async def test_second_trade_in_flight_is_rate_limited(tmp_path: Path) -> None:
    """27. While one trade from a partner runs at the seller, a second one from it is refused with 429
    (the buyer retries such an answer within its deadline; here it is sent once by hand)."""
    async with market(tmp_path) as m:
        answered_by_handler(m)
        service = service_of(m.seller)
        real, entered, gate = service.trade_handler, asyncio.Event(), asyncio.Event()
        assert real is not None

        async def held(partner: Any, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            entered.set()
            await gate.wait()
            return await real(partner, document)

        service.trade_handler = held
        first = asyncio.ensure_future(m.order(1, 1))
        await asyncio.wait_for(entered.wait(), 10)
        identity = service_of(m.buyer).identity()
        terms = documents.Terms("shanghai-gpu", 1, 1, 10_000, "CNY", 10_000)
        body = canonical.encode(documents.trade_request(identity, "shanghai", "beijing.second0000", terms, 1))
        headers, url = await signed_post(m, "/fed/v1/trades", body)
        status, answer = await send(url, body, headers)
        assert (status, answer["error"]) == (429, "rate_limited")
        gate.set()
        status, order = await first
        assert (status, order["state"]) == (201, "accepted")
        assert trading_store.get_sale(engine_of(m.seller), "beijing", "beijing.second0000") is None


async def test_orders_left_between_states_are_finished(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """An order stopped right after its trade request was stored (as a crash would leave it; the
    hold's step writes `held` and the signed request together) is finished by the upkeep job: the
    same request is sent and the trade ends accepted, once."""
    async with market(tmp_path, db_urls) as m:
        buyer = buyer_of(m.buyer)
        _, order = await buyer._create(
            OrderTerms("beijing.crashed0000", "sha", "alice", "shanghai-gpu", "partner:shanghai", 1, 2, None)
        )
        moved = await buyer.steps.step(order)
        assert moved is not None
        order = moved
        assert order.state == "requested"
        assert order.trade_request is not None
        assert legs(m.seller, order.id) == []
        real_clock = buyer.trading.clock
        buyer.trading.clock = lambda: real_clock() + 3600
        assert await buyer.upkeep() == 1
        buyer.trading.clock = real_clock
        done = await buyer.get(order.id)
        assert done.state == "accepted"
        assert [kind for _, kind, _ in legs(m.buyer, order.id)] == ["pending", "pending"]
        assert [kind for _, kind, _ in legs(m.seller, order.id)] == ["pending", "pending"]


async def test_an_order_left_held_signs_its_trade_request(tmp_path: Path) -> None:
    """An order for a partner's offer left in `held` (an older node wrote `held` and the request in
    two steps) is moved on by its step: the signed request is stored with `requested`."""
    async with market(tmp_path) as m:
        status, _ = await m.order(1, 1)  # the accounts an order's steps ensure exist from now on
        assert status == 201
        buyer = buyer_of(m.buyer)
        _, order = await buyer._create(
            OrderTerms("beijing.heldonly000", "sha", "alice", "shanghai-gpu", "partner:shanghai", 1, 2, None)
        )
        held = await buyer.steps.move(order, "held")
        assert held is not None
        moved = await buyer.steps.step(held)
        assert moved is not None
        assert moved.state == "requested"
        assert moved.trade_request is not None
        done = await buyer.drive(moved)
        assert done.state == "accepted"


@pytest.mark.parametrize("opener", [False, True], ids=["holds-after", "holds-with-claim"])
async def test_sales_left_open_are_finished(tmp_path: Path, opener: bool) -> None:
    """A seller that fails after reserving but before recording its holds answers 500: the buyer
    retries, gives up, voids its hold and keeps the cancel to deliver. The seller's upkeep later
    records the holds of the sale left open; the delivered cancel voids them, and the buyer records
    the trade it learns was accepted. No money moves, nothing stays reserved. Without the trade
    opener the sale is opened without its holds (as a retried trade is); with it, its holds are
    stored with the claim, and upkeep finds them there (never twice)."""
    async with market(tmp_path, timeout_s=1.0) as m:
        seller = seller_of(m.seller)
        real_hold = seller._hold
        if not opener:
            service_of(m.seller).trade_opener = None
        else:
            answered_by_handler(m)

        async def failing(partner: Any, sale: Any, held: bool = False) -> Any:  # noqa: ARG001 (Seller._hold's signature)
            raise RuntimeError("the seller stopped here")

        seller._hold = failing  # type: ignore[method-assign]
        status, body = await m.order(1, 1)
        seller._hold = real_hold  # type: ignore[method-assign]
        assert (status, body["error"]) == (409, "partner_unavailable")
        trade = body["order"]["id"]
        assert (body["order"]["state"], body["order"]["notify_partner"]) == ("cancelled", True)
        sale = trading_store.get_sale(engine_of(m.seller), "beijing", trade)
        assert sale is not None
        assert sale.state == "open"
        assert len(legs(m.seller, trade)) == (2 if opener else 0)
        real_clock = seller.trading.clock
        seller.trading.clock = lambda: real_clock() + 3600
        assert await seller.upkeep() == 1
        seller.trading.clock = real_clock
        assert [kind for _, kind, _ in legs(m.seller, trade)] == ["pending", "pending"]
        # The cancel gets trade_timeout_s / 4 per delivery (0.25 s here); on a loaded machine one
        # round can miss it, and the scheduled job simply delivers it on a later round.
        delivered = [await buyer_of(m.buyer).upkeep() for _ in range(5)]
        assert 1 in delivered
        assert set(delivered[delivered.index(1) + 1 :]) <= {0}
        sale = trading_store.get_sale(engine_of(m.seller), "beijing", trade)
        assert sale is not None
        assert sale.state == "voided"
        assert [kind for _, kind, _ in legs(m.seller, trade)] == ["pending", "pending", "void", "void"]
        assert [kind for _, kind, _ in legs(m.buyer, trade)] == ["pending", "void", "pending", "void"]
        assert balances(m.seller)["partner:beijing"] == (0, 0, 0, 1_000_000)
        assert (await m.consumer())["available"] == 500_000
        assert reservations.reserved_units(engine_of(m.seller), int(time.time())) == {}
        _summaries_agree(m, trade)
