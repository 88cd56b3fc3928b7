"""Trade batches (`POST /fed/v1/trades/batch`) between two real nodes on loopback: each trade of a
batch is answered as if sent alone, bad items and bad batches change nothing, and a buyer falls
back to one request at a time with a seller that takes no batches."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from federation import canonical, store
from federation.httpsig import Identity
from node.trading import documents
from node.trading.batching import TradeBatcher, batch_body
from node.trading.documents import Terms
from tests.support.federation import service_of
from tests.support.trading import PRICE, Market, buyer_of, engine_of, legs, market, send, signed_post

BATCH = "/fed/v1/trades/batch"


def tid(name: str) -> str:
    """A trade id of the buyer's (NODE.RANDOM) for a short name."""
    return f"beijing.trade-id-{name}"


def request_bytes(
    m: Market,
    trade_id: str,
    units: int = 1,
    audience: str = "shanghai",
    identity: Identity | None = None,
) -> bytes:
    """A trade request of the buyer (signed by `identity` when given, else the buyer's key)."""
    terms = Terms("shanghai-gpu", units, 1, PRICE, "CNY", units * PRICE)
    signer = identity or service_of(m.buyer).identity()
    return canonical.encode(documents.trade_request(signer, audience, trade_id, terms, int(time.time())))


async def post_batch(m: Market, body: bytes) -> tuple[int, Any]:
    """POST a batch body the buyer signs; (status, answer)."""
    headers, url = await signed_post(m, BATCH, body)
    if len(body) <= 1024 * 1024:
        return await send(url, body, headers)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=io.BytesIO(body), headers=headers) as response,
    ):
        return response.status, canonical.decode(await response.read())


def sales(m: Market) -> dict[str, str]:
    """The seller's sales to beijing: trade id → state."""
    from node.trading import store as trading_store

    return {s.trade_id: s.state for s in trading_store.list_sales(engine_of(m.seller), partner="beijing")}


async def test_a_mixed_batch_answers_each_trade_as_if_alone(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Valid, refused, wrongly signed, misaddressed, malformed and repeated trades in one batch:
    each gets its own answer, only the valid ones open sales, and the batch sent again (a new
    signature) gets the same answers without a second sale or ledger entry."""
    async with market(tmp_path, db_urls, seller_free=4, trades_in_flight=32) as m:
        stranger = Identity("beijing", SigningKey.generate())
        # Signed once: signed twice, the two could straddle a second and differ in their time.
        first = request_bytes(m, tid("a"))
        items = [
            first,
            request_bytes(m, tid("b")),
            request_bytes(m, tid("big"), units=50),  # more than the 4 free units: refused
            request_bytes(m, tid("forged"), identity=stranger),
            request_bytes(m, tid("elsewhere"), audience="guangzhou"),
            b"42",
            first,  # the same request again in the batch
        ]
        status, answer = await post_batch(m, batch_body(items))
        assert status == 200, answer
        assert answer["type"] == "cpnode.trade-batch-answer.v1"
        got = [(a["status"], a["body"].get("error") or a["body"].get("type")) for a in answer["answers"]]
        assert got[0] == (201, "cpnode.trade-acceptance.v1")
        assert got[1] == (201, "cpnode.trade-acceptance.v1")
        assert got[2][0] == 409
        assert answer["answers"][2]["body"]["issuer"] == "shanghai"  # a signed refusal
        assert got[3] == (401, "unknown_key")
        assert got[4] == (400, "wrong_audience")
        assert got[5] == (400, "wrong_type")
        assert answer["answers"][6] == answer["answers"][0]
        for index, trade_id in ((0, tid("a")), (1, tid("b"))):
            accepted = answer["answers"][index]["body"]
            assert (accepted["trade_id"], accepted["issuer"]) == (trade_id, "shanghai")
            assert "shanghai" in accepted["signatures"]
        assert sales(m) == {tid("a"): "accepted", tid("b"): "accepted", tid("big"): "refused"}
        legs_before = store_legs(m)
        again_status, again = await post_batch(m, batch_body(items))
        assert again_status == 200
        assert again["answers"][:3] == answer["answers"][:3]
        assert sales(m) == {tid("a"): "accepted", tid("b"): "accepted", tid("big"): "refused"}
        assert store_legs(m) == legs_before


async def test_a_batch_over_the_credit_line_refuses_only_the_trades_beyond_it(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """The sales of a batch are opened and held together at the seller, each trade's holds as if
    alone: with credit for two trades, the first two are accepted and held, the third is refused
    with the signed credit refusal and holds nothing, and the batch sent again changes nothing."""
    async with market(tmp_path, db_urls, credit_limit=2 * PRICE, trades_in_flight=32) as m:
        items = [request_bytes(m, tid(name)) for name in ("one", "two", "three")]
        status, answer = await post_batch(m, batch_body(items))
        assert status == 200, answer
        got = [(a["status"], a["body"].get("error") or a["body"].get("type")) for a in answer["answers"]]
        assert got == [
            (201, "cpnode.trade-acceptance.v1"),
            (201, "cpnode.trade-acceptance.v1"),
            (409, "credit_limit_exceeded"),
        ]
        assert sales(m) == {tid("one"): "accepted", tid("two"): "accepted", tid("three"): "refused"}
        held = {name: legs(m.seller, tid(name)) for name in ("one", "two", "three")}
        assert held["three"] == []
        for name in ("one", "two"):  # the provider's part and the platform's fee, once each
            assert [kind for _, kind, _ in held[name]] == ["pending", "pending"]
            assert sum(amount for _, _, amount in held[name]) == PRICE
        transfers = store_legs(m)
        again_status, again = await post_batch(m, batch_body(items))
        assert again_status == 200
        assert again["answers"] == answer["answers"]
        assert store_legs(m) == transfers


def store_legs(m: Market) -> int:
    """How many transfers the seller's ledger holds."""
    import sqlalchemy as sa

    with engine_of(m.seller).connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM ledger_transfers")).scalar_one())


async def test_a_duplicate_with_other_content_in_a_batch_is_a_conflict(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Two requests with one trade id and different terms: the first is taken, the second is 409."""
    async with market(tmp_path, db_urls, trades_in_flight=32) as m:
        items = [request_bytes(m, tid("d"), units=1), request_bytes(m, tid("d"), units=2)]
        status, answer = await post_batch(m, batch_body(items))
        assert status == 200, answer
        assert [a["status"] for a in answer["answers"]] == [201, 409], answer
        assert answer["answers"][1]["body"]["error"] == "conflict"
        assert sales(m) == {tid("d"): "accepted"}


async def test_a_replayed_batch_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """The exact signed batch sent twice: the second is 401 `replayed`."""
    async with market(tmp_path, trades_in_flight=32) as m:
        body = batch_body([request_bytes(m, tid("r1")), request_bytes(m, tid("r2"))])
        headers, url = await signed_post(m, BATCH, body)
        status, _ = await send(url, body, headers)
        assert status == 200
        before = store_legs(m)
        status, answer = await send(url, body, headers)
        assert (status, answer["error"]) == (401, "replayed")
        assert store_legs(m) == before


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda _items: b'{"requests":[],"type":"cpnode.trade-batch.v1"}', 400, "bad_batch"),
        (lambda items: batch_body(items * 65), 400, "too_many_trades"),
        (lambda _items: b'{"requests":' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400, None),
        (lambda _items: b'{"requests":[' + b"9" * 5000 + b'],"type":"cpnode.trade-batch.v1"}', 400, None),
        (lambda items: batch_body(items).replace(b"trade-batch.v1", b"trade-batch.v9"), 400, "wrong_type"),
        (lambda items: batch_body(items)[:-1] + b',"extra":1}', 400, "bad_batch"),
        (lambda _items: b'{"requests":[1],"requests":[2],"type":"cpnode.trade-batch.v1"}', 400, None),
        (
            lambda items: batch_body(items * 64)[:-1] + b',"pad":"' + b"x" * 1_100_000 + b'"}',
            413,
            "body_too_large",
        ),
    ],
    ids=["empty", "too-many", "deep", "huge-int", "wrong-type", "extra-member", "duplicate-key", "oversize"],
)
async def test_bad_batches_are_refused_whole(
    tmp_path: Path, make: Any, status: int, code: str | None
) -> None:
    """A batch envelope that is not one is refused with a 4xx and opens no sale."""
    async with market(tmp_path, trades_in_flight=32) as m:
        answered, answer = await post_batch(m, make([request_bytes(m, tid("x"))]))
        assert answered == status, answer
        if code is not None:
            assert answer["error"] == code
        assert sales(m) == {}


async def test_a_seller_without_batches_is_served_one_by_one(tmp_path: Path) -> None:
    """A seller that takes no batches answers the batch route 404; the buyer's requests sent
    together then each go alone, and all are accepted."""
    async with market(tmp_path, trades_in_flight=32, seller_extra="accept_trade_batches = false\n") as m:
        status, answer = await post_batch(m, batch_body([request_bytes(m, tid("z"))]))
        assert (status, answer["error"]) == (404, "not_found")
        batcher = TradeBatcher(service_of(m.buyer), max_trades=32)
        partner = store.get_partner(engine_of(m.buyer), "shanghai")
        assert partner is not None
        bodies = [request_bytes(m, tid(f"f{i}")) for i in range(4)]
        # Posted together, all four go in one exchange, a batch: refused 404, then each alone.
        answers = await asyncio.gather(*(batcher.post(partner, body, 20.0) for body in bodies))
        assert [a.status for a in answers] == [201] * 4
        assert batcher.counts.batches == 1
        assert sorted(sales(m)) == [tid(f"f{i}") for i in range(4)]
        await batcher.close()


async def test_a_batch_over_the_sellers_body_limit_is_sent_in_smaller_parts(tmp_path: Path) -> None:
    """A seller whose body limit is below the buyer's batch size answers the batch 413: its trade
    requests then go one by one and are all accepted, and the next batches to that seller stay
    under half the refused size, so they are taken."""
    limit = 4096
    async with market(
        tmp_path, seller_free=100, trades_in_flight=32, seller_http_toml=f"max_body_bytes = {limit}\n"
    ) as m:
        batcher = TradeBatcher(service_of(m.buyer), max_trades=32)
        partner = store.get_partner(engine_of(m.buyer), "shanghai")
        assert partner is not None
        bodies = [request_bytes(m, tid(f"b{i}")) for i in range(12)]
        assert len(bodies[0]) < limit < len(batch_body(bodies[1:]))
        # Posted together, the twelve make one batch over the limit: refused 413, then each alone.
        answers = await asyncio.gather(*(batcher.post(partner, body, 20.0) for body in bodies))
        assert [a.status for a in answers] == [201] * 12
        assert batcher.counts.batches == 1
        assert sorted(sales(m)) == sorted(tid(f"b{i}") for i in range(12))
        # Later batches fit: fewer exchanges than requests, every one accepted.
        more = [request_bytes(m, tid(f"m{i}")) for i in range(12)]
        before = batcher.counts.exchanges
        answers = await asyncio.gather(*(batcher.post(partner, body, 20.0) for body in more))
        assert [a.status for a in answers] == [201] * 12
        assert batcher.counts.batches > 1
        assert batcher.counts.exchanges - before < 12
        assert len(sales(m)) == 24
        await batcher.close()


async def test_concurrent_requests_share_exchanges(tmp_path: Path) -> None:
    """Requests posted in the same turn of the event loop (as the orders one placing transaction
    wrote are) go in one exchange, the first not alone; each is answered with its own signed
    acceptance. A lone request still goes by itself, to the single-trade route."""
    async with market(tmp_path, seller_free=100, trades_in_flight=32) as m:
        batcher = buyer_of(m.buyer).steps.exchanges
        partner = store.get_partner(engine_of(m.buyer), "shanghai")
        assert partner is not None
        bodies = [request_bytes(m, tid(f"c{i}")) for i in range(10)]
        before, batches = batcher.counts.exchanges, batcher.counts.batches
        answers = await asyncio.gather(*(batcher.post(partner, body, 20.0) for body in bodies))
        assert batcher.counts.exchanges - before == 1
        assert batcher.counts.batches - batches == 1
        trade_ids = [canonical.decode(a.body)["trade_id"] for a in answers]
        assert trade_ids == [tid(f"c{i}") for i in range(10)]
        assert all(a.status == 201 for a in answers)
        assert set(sales(m).values()) == {"accepted"}
        lone = await batcher.post(partner, request_bytes(m, tid("lone")), 20.0)
        assert lone.status == 201
        assert batcher.counts.exchanges - before == 2
        assert batcher.counts.batches - batches == 1  # the lone request went by itself
