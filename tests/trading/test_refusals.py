"""Orders that must not become sales, and bad input: each answers a clear 4xx with a code, leaves
the consumer's money where it was, and records nothing on the seller beyond what the rules say."""

from __future__ import annotations

from pathlib import Path

from federation.partners import Agreement
from tests.support.trading import PRICE, balances, legs, market, pin


async def test_credit_limit_refusal_is_the_ledgers_doing(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """A trade beyond the partner's credit line is refused by the seller's ledger with a signed
    refusal (409 credit_limit_exceeded); the buyer voids its hold and nothing stays reserved."""
    async with market(tmp_path, db_urls, credit_limit=50_000) as m:
        status, first = await m.order(1, 3)  # 30,000 of 50,000
        assert status == 201, first
        status, body = await m.order(1, 3)  # another 30,000: over the line
        assert status == 409, body
        assert body["error"] == "credit_limit_exceeded"
        assert "300.00 CNY exceeds the credit shanghai gives beijing" in body["message"]
        assert "a limit of 500.00 CNY, 200.00 CNY of it unused" in body["message"]
        assert "`cpnode partners update beijing --credit-limit MINOR_UNITS`" in body["message"]
        assert body["order"]["state"] == "cancelled"
        refused = body["order"]["id"]
        assert [kind for _, kind, _ in legs(m.buyer, refused)] == ["pending", "void"]
        assert legs(m.seller, refused) == []
        alice = await m.consumer()
        assert (alice["held"], alice["available"]) == (30_000, 470_000)
        seller = balances(m.seller)
        assert seller["partner:beijing"] == (30_000, 0, 0, 50_000)
        assert seller["creditline:beijing"] == (0, 50_000, 0, 0)
        status, offers = await m.get("/api/v1/offers", "seller")
        assert next(o for o in offers["offers"] if o["id"] == "shanghai-gpu")["free_units"] == 3
        # A larger agreement funds the line further: the same order now goes through.
        assert m.seller.ctx is not None
        pin(m.seller, m.buyer, Agreement(credit_limit=100_000))
        status, again = await m.order(1, 3)
        assert status == 201, again
        assert balances(m.seller)["creditline:beijing"] == (0, 100_000, 0, 0)


async def test_the_default_credit_limit_is_zero_and_the_refusal_says_so(tmp_path: Path) -> None:
    """With no credit limit agreed (0, the default) the seller refuses every trade, and its message
    says the limit is the default and which command raises it."""
    async with market(tmp_path, credit_limit=0) as m:
        status, body = await m.order(1, 1)
        assert (status, body["error"]) == (409, "credit_limit_exceeded")
        assert "a limit of 0.00 CNY (the default for a partner)" in body["message"]
        assert "cpnode partners update beijing --credit-limit" in body["message"]
        assert (await m.consumer())["available"] == 500_000


async def test_insufficient_funds_never_reach_the_seller(tmp_path: Path) -> None:
    """A consumer without enough money is rejected by the buyer's ledger before any request is sent."""
    async with market(tmp_path, deposit=10_000) as m:
        status, body = await m.order(1, 2)  # 20,000 > 10,000
        assert (status, body["error"], body["order"]["state"]) == (409, "insufficient_funds", "rejected")
        assert "alice needs 200.00 CNY for this order and has 100.00 CNY available" in body["message"]
        assert legs(m.buyer, body["order"]["id"]) == []
        assert (await m.get("/api/v1/sales", "seller"))[1]["sales"] == []
        assert (await m.consumer())["available"] == 10_000


async def test_seller_refuses_changed_prices_and_missing_capacity(tmp_path: Path) -> None:
    """A catalog price that changed since the buyer's sync is refused (price_changed), and so are more
    units than the seller has free (not_enough_free_units); the buyer's holds are voided each time."""
    async with market(tmp_path, seller_free=2) as m:
        pin(m.seller, m.buyer, Agreement(credit_limit=1_000_000, markup_bp=1000))
        status, body = await m.order(1, 1)
        assert (status, body["error"]) == (409, "price_changed")
        await m.sync()
        status, offers = await m.get("/api/v1/offers?partner=shanghai")
        assert (
            next(o for o in offers["offers"] if o["id"] == "shanghai-gpu")["price_per_unit_hour"]
            == PRICE * 11 // 10
        )
        status, first = await m.order(2, 1)
        assert status == 201, first
        # The buyer's catalog still says 2 free: the seller knows better.
        status, body = await m.order(1, 1)
        assert (status, body["error"]) == (409, "not_enough_free_units")
        assert (await m.consumer())["held"] == first["amount"]
        await m.sync()  # the reservation lowered the catalog's free units to 0
        status, body = await m.order(1, 1)
        assert (status, body["error"]) == (409, "not_enough_free_units")
        assert "order" not in body  # refused before anything was held


async def test_bad_requests_change_nothing(tmp_path: Path) -> None:
    """Malformed or impossible requests answer 4xx with a code and write nothing."""
    async with market(tmp_path) as m:
        before = balances(m.buyer)
        cases = [
            ({"consumer": "alice"}, 400, "bad_request"),
            (
                {
                    "consumer": "alice",
                    "offer_id": "x",
                    "source": "partner:shanghai",
                    "units": 1,
                    "hours": 1.5,
                },
                400,
                "bad_request",
            ),
            (
                {"consumer": "alice", "offer_id": "x", "source": "partner:shanghai", "units": 0, "hours": 1},
                400,
                "bad_request",
            ),
            (
                {
                    "consumer": "bob",
                    "offer_id": "shanghai-gpu",
                    "source": "partner:shanghai",
                    "units": 1,
                    "hours": 1,
                },
                404,
                "unknown_consumer",
            ),
            (
                {
                    "consumer": "alice",
                    "offer_id": "nope",
                    "source": "partner:shanghai",
                    "units": 1,
                    "hours": 1,
                },
                404,
                "unknown_offer",
            ),
            (
                {
                    "consumer": "alice",
                    "offer_id": "shanghai-gpu",
                    "source": "partner:nobody",
                    "units": 1,
                    "hours": 1,
                },
                404,
                "unknown_partner",
            ),
            (
                {
                    "consumer": "alice",
                    "offer_id": "shanghai-gpu",
                    "source": "own:config",
                    "units": 1,
                    "hours": 1,
                },
                404,
                "unknown_offer",
            ),
            (
                {
                    "consumer": "alice",
                    "offer_id": "shanghai-gpu",
                    "source": "partner:shanghai",
                    "units": 1,
                    "hours": 1,
                    "id": "shanghai.abcdefgh12",
                },
                400,
                "foreign_trade_id",
            ),
            (
                {
                    "consumer": "Alice!",
                    "offer_id": "shanghai-gpu",
                    "source": "partner:shanghai",
                    "units": 1,
                    "hours": 1,
                },
                400,
                "bad_consumer",
            ),
        ]
        for body, status, code in cases:
            got_status, got = await m.post("/api/v1/orders", body)
            assert (got_status, got["error"]) == (status, code), (body, got)
        async with m.buyer_http.post("/api/v1/orders", data=b"{") as response:
            assert (response.status, (await response.json())["error"]) == (400, "bad_json")
        for path, body, status, code in (
            ("/api/v1/orders/beijing.0000000000/settle", {"used_hours": 1}, 404, "unknown_order"),
            ("/api/v1/consumers/alice/deposits", {"amount": -5}, 400, "bad_request"),
            ("/api/v1/consumers/nobody/deposits", {"amount": 5}, 404, "unknown_consumer"),
            ("/api/v1/consumers", {"id": "UPPER"}, 400, "bad_request"),
        ):
            got_status, got = await m.post(path, body)
            assert (got_status, got["error"]) == (status, code), (path, got)
        status, order = await m.order(1, 2)
        assert status == 201
        for used, code in ((3, "bad_used_hours"), (-1, "bad_request")):
            got_status, got = await m.post(f"/api/v1/orders/{order['id']}/settle", {"used_hours": used})
            assert (got_status, got["error"]) == (400, code)
        got_status, got = await m.post(f"/api/v1/orders/{order['id']}/cancel", {"now": True})
        assert (got_status, got["error"], got["field"]) == (400, "bad_request", "now")
        assert (await m.get(f"/api/v1/orders/{order['id']}"))[1]["state"] == "accepted"
        # The same deposit id again is idempotent; with another amount it is refused.
        assert (await m.post("/api/v1/consumers/alice/deposits", {"amount": 500_000, "id": "dep-alice-1"}))[
            0
        ] == 200
        got_status, got = await m.post("/api/v1/consumers/alice/deposits", {"amount": 7, "id": "dep-alice-1"})
        assert (got_status, got["error"]) == (409, "exists_with_different_field")
        # The same order id with other terms is refused; with the same terms it answers the order.
        again = {
            "consumer": "alice",
            "offer_id": "shanghai-gpu",
            "source": "partner:shanghai",
            "units": 1,
            "hours": 2,
        }
        assert (await m.post("/api/v1/orders", {**again, "id": order["id"]}))[1]["id"] == order["id"]
        got_status, got = await m.post("/api/v1/orders", {**again, "hours": 1, "id": order["id"]})
        assert (got_status, got["error"]) == (409, "order_id_reused")
        after = balances(m.buyer)
        assert after["consumer:alice"][1:] == before["consumer:alice"][1:]  # only the one hold is pending
        async with m.buyer_http.get("/api/v1/orders", headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
