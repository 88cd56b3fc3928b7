"""Matching and ordering by demand over real HTTP between two real nodes on 127.0.0.1: beijing (the
buyer: one own offer) and shanghai (its partner: two offers), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from federation.partners import Agreement
from federation.tables import received_t, sync_t
from tests.support.trading import Market, engine_of, market, pin

# beijing-local: 3 free at 2,000; shanghai-cpu: 10 free at 500; shanghai-gpu: 4 free at 10,000.
CHEAPEST = ["partner:shanghai/shanghai-cpu", "own:config/beijing-local", "partner:shanghai/shanghai-gpu"]


def ranked(body: dict[str, Any]) -> list[str]:
    """`source/offer_id` of a match answer's matches, in rank order."""
    return [f"{m['source']}/{m['offer_id']}" for m in body["matches"]]


async def orders(m: Market) -> list[dict[str, Any]]:
    """Every order at the buyer."""
    status, body = await m.get("/api/v1/orders")
    assert status == 200, body
    return list(body["orders"])


async def test_best_match_is_the_partner_offer_and_is_ordered_there(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Matches rank own and partner offers together with totals; the partner's cheapest is ordered
    at the partner; a constraint excludes offers with their reason."""
    async with market(tmp_path, db_urls) as m:
        status, body = await m.post("/api/v1/match", {"units": 2, "hours": 3})
        assert status == 200, body
        assert ranked(body) == CHEAPEST
        assert [x["total"] for x in body["matches"]] == [2 * 3 * 500, 2 * 3 * 2_000, 2 * 3 * 10_000]
        assert (body["excluded"], body["currency"], "plan" in body) == ([], "CNY", False)

        status, body = await m.post("/api/v1/match", {"units": 4, "hours": 1, "regions": ["shanghai"]})
        assert ranked(body) == [CHEAPEST[0], CHEAPEST[2]]
        assert [(x["offer_id"], x["reason"]) for x in body["excluded"]] == [("beijing-local", "region")]
        assert (body["candidates"], body["excluded_by_reason"]) == (2, {"region": 1})

        status, body = await m.post("/api/v1/match?limit=1", {"units": 2, "hours": 3})  # the first only
        assert (status, ranked(body), body["candidates"]) == (200, CHEAPEST[:1], 3), body
        status, body = await m.post("/api/v1/match?limit=0", {"units": 2, "hours": 3})
        assert (status, body["error"]) == (422, "bad_demand"), body

        status, body = await m.post(
            "/api/v1/orders", {"consumer": "alice", "demand": {"units": 2, "hours": 3}}
        )
        assert status == 201, body
        [order] = body["orders"]
        assert (order["state"], order["partner"], order["offer_id"]) == (
            "accepted",
            "shanghai",
            "shanghai-cpu",
        )
        assert order["amount"] == 2 * 3 * 500
        assert [t["outcome"] for t in body["tried"]] == ["accepted"]
        status, sales = await m.get("/api/v1/sales", "seller")
        assert [s["trade_id"] for s in sales["sales"]] == [order["id"]]


async def test_a_refusal_another_offer_avoids_falls_to_the_next_candidate(tmp_path: Path) -> None:
    """The best offer refuses (its price changed since the buyer's sync): the next candidate is
    ordered, and both tries are reported."""
    async with market(tmp_path) as m:
        pin(m.seller, m.buyer, Agreement(credit_limit=1_000_000, markup_bp=1000))
        status, body = await m.post(
            "/api/v1/orders", {"consumer": "alice", "demand": {"units": 2, "hours": 3}}
        )
        assert status == 201, body
        assert [(t["offer_id"], t["outcome"]) for t in body["tried"]] == [
            ("shanghai-cpu", "price_changed"),
            ("beijing-local", "accepted"),
        ]
        [order] = body["orders"]
        assert (order["source"], order["state"]) == ("own:config", "accepted")
        assert (await m.consumer())["held"] == order["amount"]


async def test_a_consumer_token_matches_and_orders_for_itself(tmp_path: Path) -> None:
    """With its own token a consumer matches and orders by demand without naming itself; naming
    another consumer is forbidden."""
    async with market(tmp_path) as m:
        status, issued = await m.post("/api/v1/consumers/alice/tokens", {})
        assert status == 201, issued
        headers = {"Authorization": f"Bearer {issued['token']}"}
        async with aiohttp.ClientSession(m.buyer.url, headers=headers) as http:
            async with http.post("/api/v1/match", json={"units": 1, "hours": 1, "objective": "value"}) as r:
                assert r.status == 200
                assert len((await r.json())["matches"]) == 3
            demand = {"units": 1, "hours": 1, "sources": ["own"]}
            async with http.post("/api/v1/orders", json={"demand": demand}) as r:
                body = await r.json()
                assert r.status == 201, body
            async with http.post("/api/v1/orders", json={"consumer": "bob", "demand": demand}) as r:
                assert (r.status, (await r.json())["error"]) == (403, "forbidden")
        [order] = body["orders"]
        assert (order["consumer"], order["offer_id"]) == ("alice", "beijing-local")


async def test_bad_demands_are_422_naming_the_field_and_place_nothing(tmp_path: Path) -> None:
    """A bad demand, both order forms, and a currency the node does not trade in are 422 naming the
    field (neither form 400, as a missing field always was); no order is placed, nothing is held."""
    async with market(tmp_path) as m:
        cases: list[tuple[str, Any, str]] = [
            ("/api/v1/match", {"units": 1}, "hours"),
            ("/api/v1/match", {"units": 1, "hours": 1, "currency": "USD"}, "currency"),
            ("/api/v1/orders", {"consumer": "alice", "demand": {"units": 0, "hours": 1}}, "demand.units"),
            ("/api/v1/orders", {"consumer": "alice", "demand": [1]}, "demand"),
            (
                "/api/v1/orders",
                {"consumer": "alice", "demand": {"units": 1, "hours": 1, "tags": "gpu"}},
                "demand.tags",
            ),
            (
                "/api/v1/orders",
                {"consumer": "alice", "offer_id": "shanghai-cpu", "demand": {"units": 1, "hours": 1}},
                "offer_id, source, demand",
            ),
        ]
        for path, body, field in cases:
            status, answer = await m.post(path, body)
            assert (status, answer.get("field")) == (422, field), (body, answer)
        # Neither form: the 400 a missing field of the offer form always was, naming the fields.
        status, answer = await m.post("/api/v1/orders", {"consumer": "alice", "units": 1, "hours": 1})
        assert (status, answer.get("field")) == (400, "offer_id, source, demand")
        status, answer = await m.post(
            "/api/v1/orders", {"consumer": "alice", "demand": {"units": 1, "hours": 1, "chip_model": "H100"}}
        )
        assert (status, answer["error"], answer["excluded_by_reason"]) == (
            409,
            "no_match",
            {"chip_mismatch": 3},
        )
        assert await orders(m) == []
        assert (await m.consumer())["held"] == 0


async def test_split_orders_each_part_and_cancels_placed_parts_when_one_fails(tmp_path: Path) -> None:
    """A demand larger than any offer is split cheapest first into one order per part; when a later
    part is refused (here: the consumer cannot pay for it), the parts placed are cancelled."""
    async with market(tmp_path) as m:
        demand = {"units": 12, "hours": 2, "split": True}
        status, body = await m.post("/api/v1/match", demand)
        assert [(p["offer_id"], p["units"]) for p in body["plan"]] == [
            ("shanghai-cpu", 10),
            ("beijing-local", 2),
        ]
        assert body["plan_total"] == 2 * (10 * 500 + 2 * 2_000)

        status, body = await m.post(
            "/api/v1/orders", {"consumer": "alice", "demand": {**demand, "hours": 80}}
        )
        assert (status, body["error"], body["refused"]) == (409, "plan_failed", "insufficient_funds")
        [cancelled] = body["cancelled"]
        assert "cancelled" in body["message"]
        states = {o["id"]: o["state"] for o in await orders(m)}
        assert states[cancelled] == "cancelled"
        assert "accepted" not in states.values()
        assert (await m.consumer())["held"] == 0

        status, body = await m.post(
            "/api/v1/orders", {"consumer": "alice", "demand": demand, "id": "beijing.request-1"}
        )
        assert status == 201, body
        assert [(o["offer_id"], o["units"], o["state"]) for o in body["orders"]] == [
            ("shanghai-cpu", 10, "accepted"),
            ("beijing-local", 2, "accepted"),
        ]
        # The same request again finds the orders it placed.
        status, again = await m.post(
            "/api/v1/orders", {"consumer": "alice", "demand": demand, "id": "beijing.request-1"}
        )
        assert (status, again["replayed"]) == (200, True)
        assert [o["id"] for o in again["orders"]] == [o["id"] for o in body["orders"]]


async def test_offers_of_an_expired_catalog_are_excluded_with_a_reason(tmp_path: Path) -> None:
    """Once the partner's catalog has expired its offers are excluded as `catalog_expired` (and
    cannot be ordered), while own offers still match."""
    async with market(tmp_path) as m:
        with engine_of(m.buyer).begin() as conn:
            conn.execute(sa.update(received_t).values(expires_ts=int(time.time()) - 1))
        status, body = await m.post("/api/v1/match", {"units": 1, "hours": 1})
        assert status == 200, body
        assert ranked(body) == ["own:config/beijing-local"]
        assert {(x["offer_id"], x["reason"]) for x in body["excluded"]} == {
            ("shanghai-cpu", "catalog_expired"),
            ("shanghai-gpu", "catalog_expired"),
        }


async def test_max_age_excludes_a_partner_whose_sync_stopped_confirming(tmp_path: Path) -> None:
    """A partner whose catalog a sync round last confirmed ten minutes ago is `catalog_stale` for a
    demand with max_age_s 300; once a round confirms it again (unchanged, not refetched) it matches."""
    async with market(tmp_path) as m:
        demand = {"units": 1, "hours": 1, "max_age_s": 300}
        long_ago = int(time.time()) - 600
        with engine_of(m.buyer).begin() as conn:
            conn.execute(sa.update(received_t).values(received_ts=long_ago))
            conn.execute(sa.update(sync_t).values(last_success_ts=long_ago))
        status, body = await m.post("/api/v1/match", demand)
        assert status == 200, body
        assert ranked(body) == ["own:config/beijing-local"]
        assert {(x["offer_id"], x["reason"]) for x in body["excluded"]} == {
            ("shanghai-cpu", "catalog_stale"),
            ("shanghai-gpu", "catalog_stale"),
        }
        with engine_of(m.buyer).begin() as conn:
            conn.execute(sa.update(sync_t).values(last_success_ts=int(time.time()) - 10))
        status, body = await m.post("/api/v1/match", demand)
        assert "partner:shanghai/shanghai-cpu" in ranked(body)
        assert all(row["age_s"] >= 600 for row in body["matches"] if row["partner"] == "shanghai")
