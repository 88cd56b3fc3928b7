"""What an order's path saves per order, each checked against the work it replaces: concurrent
capacity refreshes share reads, ledger batches submitted from the loop give what a thread's
submit gives, and accounts known to exist, or a credit line found funded a moment ago, cost no
database trip."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

import ledger
from federation import claims
from federation import store as federation_store
from ledger import Status, TransferRequest
from node.db import write_transaction
from node.offers import CatalogOffer
from node.trading import books, holding, placing, reservations, store
from node.trading.capacity import Capacity
from node.trading.errors import StateError
from node.trading.machine import OrderEvent
from node.trading.records import Order
from node.trading.steps import partner_hold_of
from tests.support.federation import service_of
from tests.support.trading import engine_of, legs, market, order_values, sale_values, seller_of


async def test_concurrent_refreshes_share_reads(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty refreshes asked while one read runs are served by one more read, begun after all of
    them were asked (so none misses a change made before it asked); one asked alone reads alone."""
    started, release = threading.Event(), threading.Event()
    reads: list[int] = []
    real = reservations.reserved

    def counted(engine: Engine, now_ts: int) -> Any:
        reads.append(now_ts)
        if len(reads) == 1:
            started.set()
            assert release.wait(timeout=60)
        return real(engine, now_ts)

    monkeypatch.setattr(reservations, "reserved", counted)
    capacity = Capacity(engine)
    first = asyncio.create_task(capacity.refresh())
    assert await asyncio.to_thread(started.wait, 60)
    others = [asyncio.create_task(capacity.refresh()) for _ in range(20)]
    await asyncio.sleep(0)  # let every other refresh ask before the first read ends
    release.set()
    await asyncio.gather(first, *others)
    assert len(reads) == 2
    await capacity.refresh()
    assert len(reads) == 3


async def test_submit_from_the_loop_answers_as_a_threads_submit(engine: Engine) -> None:
    """`books.submit_async` stores what `books.submit` stores and names the same causes, including
    the remembered reason of an id that failed before; accounts once ensured are known."""
    specs = [books.consumer_spec("alice", "CNY"), *books.house_specs("CNY")]
    assert not books.accounts_known(engine, specs)
    books.ensure_accounts(engine, specs)
    assert books.accounts_known(engine, specs)

    def hold(order_id: str, amount: int) -> TransferRequest:
        return books.order_hold(order_id, "alice", amount, "CNY", 60)

    assert await books.submit_async(engine, []) is None
    # alice has no money: the hold is refused, and asked again the id's first reason is given
    refused = await books.submit_async(engine, [hold("h-1", 5)])
    assert refused is Status.EXCEEDS_CREDITS
    assert await books.submit_async(engine, [hold("h-1", 5)]) is Status.EXCEEDS_CREDITS
    assert await asyncio.to_thread(books.submit, engine, [hold("h-1", 5)]) is Status.EXCEEDS_CREDITS
    assert await asyncio.to_thread(books.submit, engine, [hold("h-2", 5)]) is Status.EXCEEDS_CREDITS
    deposit = await asyncio.to_thread(books.deposit, engine, "alice", "dep-1", 7, "CNY")
    assert deposit.ok
    assert await books.submit_async(engine, [hold("h-3", 5)]) is None
    assert await books.submit_async(engine, [hold("h-4", 5)]) is Status.EXCEEDS_CREDITS  # 2 left


async def test_placing_reads_in_one_trip(engine: Engine) -> None:
    """What placing reads in its one trip: an unknown consumer, or an unknown partner of a known
    consumer, comes back as such (the order then fails with the error it always gave)."""
    from node.trading.placing import read_for_placing

    read = await asyncio.to_thread(
        read_for_placing, engine, "beijing.x", "consumer:nobody", "shanghai", "gpu", 0
    )
    assert (read.order, read.consumer_exists, read.partner) == (None, False, None)
    books.ensure_accounts(engine, [books.consumer_spec("alice", "CNY")])
    read = await asyncio.to_thread(
        read_for_placing, engine, "beijing.x", "consumer:alice", "shanghai", "gpu", 0
    )
    assert (read.order, read.consumer_exists, read.partner, read.partner_offer) == (None, True, None, None)


def test_credit_line_checked_again_when_the_limit_changes_or_a_second_passed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line found funded to a limit is not read again for that limit within CREDIT_LINE_CHECK_S;
    another limit, or the same one after it, is read (and synced) again."""
    books.ensure_accounts(engine, books.partner_specs("beijing", "CNY"))
    assert not books.credit_line_known(engine, "beijing", 50_000, "CNY")
    assert books.sync_credit_line(engine, "beijing", 50_000, "CNY") == 50_000
    assert books.credit_line_known(engine, "beijing", 50_000, "CNY")
    assert not books.credit_line_known(engine, "beijing", 80_000, "CNY")
    assert not books.credit_line_known(engine, "shanghai", 50_000, "CNY")
    assert books.sync_credit_line(engine, "beijing", 80_000, "CNY") == 80_000  # as another replica would
    assert not books.credit_line_known(engine, "beijing", 50_000, "CNY")
    now = time.monotonic()
    assert books.sync_credit_line(engine, "beijing", 50_000, "CNY") == 50_000
    monkeypatch.setattr(time, "monotonic", lambda: now + books.CREDIT_LINE_CHECK_S + 1)
    assert not books.credit_line_known(engine, "beijing", 50_000, "CNY")


def _partner_order(engine: Engine, order_id: str, amount: int) -> None:
    """A new order for a partner's offer, stored as placing stores it."""
    store.insert_order(engine, order_values(order_id, amount))


def test_one_failing_order_of_a_placing_group_leaves_the_others_placed(engine: Engine) -> None:
    """`place_group` writes a group without savepoints; when one order fails the group runs again
    with a savepoint per order: the failing order gets its error, the others are placed and held
    once, as if each had been placed alone."""
    books.ensure_accounts(engine, [books.consumer_spec("alice", "CNY"), *books.house_specs("CNY")])
    assert books.deposit(engine, "alice", "dep-1", 100, "CNY").ok
    runs: list[str] = []

    def values_of(order_id: str) -> Callable[[placing.Placing], dict[str, Any]]:
        def values(_read: placing.Placing) -> dict[str, Any]:
            runs.append(order_id)
            if order_id == "beijing.bad":
                raise RuntimeError("this order's values cannot be made")
            return order_values(order_id, 10)

        return values

    def holding(order: Order) -> tuple[list[TransferRequest], list[tuple[OrderEvent, Mapping[str, Any]]]]:
        hold = books.order_hold(order.id, "alice", order.amount, "CNY", 3600)
        return [hold], [("held", {}), ("requested", {"trade_request": b"{}"})]

    ids = ["beijing.a", "beijing.bad", "beijing.c"]
    calls = [
        placing.PlacingCall(i, "consumer:alice", None, "shanghai-gpu", 1, None, values_of(i), holding)
        for i in ids
    ]
    results = placing.place_group(engine, calls)
    assert isinstance(results[1], RuntimeError)
    assert runs == ["beijing.a", "beijing.bad", *ids]  # the first try stopped at the failure
    for order_id, result in zip(ids[::2], results[::2], strict=True):
        assert isinstance(result, placing.Placing)
        assert result.created is not None
        assert result.created.state == "requested"
        stored = store.get_order(engine, order_id)
        assert stored is not None
        assert stored.state == "requested"
    assert store.get_order(engine, "beijing.bad") is None
    assert books.available(engine, "consumer:alice") == 80  # two holds of 10, each once


def test_a_placing_group_holds_its_orders_in_one_ledger_write(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A placing group's holds go to the ledger in one write, each order's hold as alone: the
    consumer's money covers the first two orders, so the third's hold is refused and it is left
    `new` (for its step to reject), the others `requested`."""
    books.ensure_accounts(engine, [books.consumer_spec("alice", "CNY"), *books.house_specs("CNY")])
    assert books.deposit(engine, "alice", "dep-1", 25, "CNY").ok
    writes: list[int] = []
    real = ledger.submit_batches_in

    def counted(conn: Any, batches: Any, **kwargs: Any) -> ledger.JoinedBatch:
        writes.append(len(batches))
        return real(conn, batches, **kwargs)

    monkeypatch.setattr(ledger, "submit_batches_in", counted)

    def holding(order: Order) -> tuple[list[TransferRequest], list[tuple[OrderEvent, Mapping[str, Any]]]]:
        hold = books.order_hold(order.id, "alice", order.amount, "CNY", 3600)
        return [hold], [("held", {}), ("requested", {"trade_request": b"{}"})]

    ids = ["beijing.a", "beijing.b", "beijing.c"]

    def values_of(order_id: str) -> Callable[[placing.Placing], dict[str, Any]]:
        return lambda _read: order_values(order_id, 10)

    calls = [
        placing.PlacingCall(i, "consumer:alice", None, "shanghai-gpu", 1, None, values_of(i), holding)
        for i in ids
    ]
    results = placing.place_group(engine, calls)
    assert writes == [3]
    states = [r.created.state for r in results if isinstance(r, placing.Placing) and r.created]
    assert states == ["requested", "requested", "new"]
    assert [o.state for i in ids if (o := store.get_order(engine, i)) is not None] == states
    assert books.available(engine, "consumer:alice") == 5


def test_an_order_inserted_where_its_steps_lead_is_the_one_inserted_then_moved(engine: Engine) -> None:
    """`insert_moved_order_in` stores what `insert_new_order_in` and `move_order_in` store, and so
    does `insert_moved_orders_in` for several orders in one statement (one whose steps end it, as
    the two statements would)."""
    steps: list[tuple[OrderEvent, Mapping[str, Any]]] = [
        ("held", {}),
        ("requested", {"trade_request": b'{"t":1}'}),
    ]
    ending: list[tuple[OrderEvent, Mapping[str, Any]]] = [("rejected", {"reason": "insufficient_funds"})]
    with engine.begin() as conn:
        created = store.insert_new_order_in(conn, order_values("beijing.two", 10))
        two = store.move_order_in(conn, created.id, created.state, steps, 7)
        one = store.insert_moved_order_in(conn, order_values("beijing.one", 10), steps, 7)
        three, ended, four = store.insert_moved_orders_in(
            conn,
            [
                (order_values("beijing.three", 10), steps, 7),
                (order_values("beijing.ended", 10), ending, 7),
                (order_values("beijing.four", 10), steps, 7),
            ],
        )
    assert two is not None
    assert one.state == two.state == three.state == four.state == "requested"
    assert ended.state == "rejected"
    for order in (one, three, four):
        assert {**order.__dict__, "id": None} == {**two.__dict__, "id": None}
        assert store.get_order(engine, order.id) == order
    assert store.get_order(engine, "beijing.ended") == ended


def test_a_sale_inserted_held_is_the_one_inserted_then_moved(engine: Engine) -> None:
    """`open_sale_in` whose `hold` answers True stores the sale already moved on by `held`, field for
    field as the insert then the move stored it; one whose `hold` answers False stays `open`."""
    offer: CatalogOffer = {"id": "shanghai-gpu", "pool": "gpu", "free_units": 4}  # type: ignore[typeddict-item]
    with write_transaction(engine) as conn:
        _, opened = store.open_sale_in(conn, sale_values("two"), offer, 7)
        moved = store.move_sale_in(conn, opened, "held", 7)
        outcome, one = store.open_sale_in(conn, sale_values("one"), offer, 7, lambda _conn: True)
        _, unheld = store.open_sale_in(conn, sale_values("unheld"), offer, 7, lambda _conn: False)
    assert moved is not None
    assert (outcome, one.state, moved.state, unheld.state) == ("opened", "accepted", "accepted", "open")
    assert {**one.__dict__, "trade_id": None} == {**moved.__dict__, "trade_id": None}
    assert store.get_sale(engine, "beijing", "one") == one


def test_hold_and_move_commit_together(engine: Engine) -> None:
    """`holding.move_order_holding` stores the hold and the move in one transaction; a hold the ledger
    refuses is recorded without the move; an order moved meanwhile is not moved again, and its hold
    asked again answers `exists`."""
    books.ensure_accounts(engine, [books.consumer_spec("alice", "CNY"), *books.house_specs("CNY")])
    assert books.deposit(engine, "alice", "dep-1", 10, "CNY").ok
    _partner_order(engine, "beijing.a", 8)
    _partner_order(engine, "beijing.b", 8)
    steps: list[tuple[OrderEvent, Mapping[str, Any]]] = [
        ("held", {}),
        ("requested", {"trade_request": b"{}"}),
    ]

    def hold(order_id: str) -> list[TransferRequest]:
        return [books.order_hold(order_id, "alice", 8, "CNY", 3600)]

    results, moved = holding.move_order_holding(engine, "beijing.a", "new", hold("beijing.a"), steps, 1)
    assert [r.status for r in results] == [Status.CREATED]
    assert moved is not None
    assert moved.state == "requested"
    assert moved.trade_request == b"{}"
    results, moved = holding.move_order_holding(engine, "beijing.b", "new", hold("beijing.b"), steps, 1)
    assert ([r.status for r in results], moved) == ([Status.EXCEEDS_CREDITS], None)  # 2 left
    order = store.get_order(engine, "beijing.b")
    assert order is not None
    assert order.state == "new"
    assert books.submit(engine, hold("beijing.b")) is Status.EXCEEDS_CREDITS  # the refusal is remembered
    results, moved = holding.move_order_holding(engine, "beijing.a", "new", hold("beijing.a"), steps, 2)
    assert ([r.status for r in results], moved) == ([Status.EXISTS], None)
    assert books.available(engine, "consumer:alice") == 2


def test_accepted_moves_and_their_partner_holds_commit_together(engine: Engine) -> None:
    """`holding.move_orders_holding` moves a group of orders and writes the partner hold of each one
    it moved, in one transaction: an order moved meanwhile gets neither, an event its state refuses
    is that order's error, and the others are accepted and held once (asked again: not moved, no
    second hold)."""
    books.ensure_accounts(
        engine,
        [
            books.consumer_spec("alice", "CNY"),
            *books.house_specs("CNY"),
            *books.partner_specs("shanghai", "CNY"),
        ],
    )
    assert books.deposit(engine, "alice", "dep-1", 100, "CNY").ok
    steps: list[tuple[OrderEvent, Mapping[str, Any]]] = [
        ("held", {}),
        ("requested", {"trade_request": b"{}"}),
    ]
    ids = ["beijing.a", "beijing.b", "beijing.c", "beijing.d"]
    for order_id in ids:
        _partner_order(engine, order_id, 10)
        hold = books.order_hold(order_id, "alice", 10, "CNY", 3600)
        _, moved = holding.move_order_holding(engine, order_id, "new", [hold], steps, 1)
        assert moved is not None
    assert store.move_order(engine, "beijing.b", "requested", "abandon", 2) is not None  # meanwhile
    accepted = {"receipt_sha256": "f" * 64, "partner_hold_expires_ts": 600}
    moves: list[tuple[str, Any, OrderEvent, Mapping[str, Any]]] = [
        ("beijing.a", "requested", "accepted", accepted),
        ("beijing.b", "requested", "accepted", accepted),
        ("beijing.c", "requested", "settle", {}),  # refused by the state machine
        ("beijing.d", "requested", "accepted", accepted),
    ]
    written = holding.move_orders_holding(engine, moves, partner_hold_of, 3)
    [(a, a_held), (b, b_held), (c, c_held), (d, d_held)] = written
    assert isinstance(c, StateError)
    assert (b, b_held, c_held) == (None, None, None)
    for order, held in ((a, a_held), (d, d_held)):
        assert isinstance(order, Order)
        assert (order.state, order.receipt_sha256) == ("accepted", "f" * 64)
        assert held is not None
        assert held.status is Status.CREATED
        transfer = ledger.get_transfer(engine, f"{order.id}:escrow")
        assert transfer is not None
        assert (transfer.amount, transfer.debit_account) == (10, "escrow:orders")
    assert not books.hold_exists(engine, "beijing.b:escrow")
    assert not books.hold_exists(engine, "beijing.c:escrow")
    stored = [store.get_order(engine, order_id) for order_id in ids]
    assert [o.state if o else None for o in stored] == ["accepted", "cancelling", "requested", "accepted"]
    again = holding.move_orders_holding(engine, moves[:1], partner_hold_of, 4)
    assert again == [(None, None)]  # accepted already: not moved, not held again


async def test_a_trade_is_one_write_transaction_at_the_seller(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """An order for a partner's offer (no task) is answered by the seller in the trade claim's one
    transaction: the trade handler is not called, the answer is stored with the sale (accepted) and
    its holds, no claim is left, a repeat of the request gets the stored answer, and the offer's
    free units as partners see them drop at once (the reservations' version changed, no read)."""
    async with market(tmp_path, db_urls) as m:
        service = service_of(m.seller)
        capacity = seller_of(m.seller).trading.capacity
        called: list[str] = []
        real = service.trade_handler
        assert real is not None

        async def recorder(partner: Any, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            called.append(str(document["trade_id"]))
            return await real(partner, document)

        service.trade_handler = recorder

        async def free_units() -> dict[str, int]:
            return {o["id"]: o["free_units"] for view in capacity.views.values() for o in await view()}

        before = await free_units()
        version = capacity.version
        status, order = await m.order(2, 1)
        assert status == 201, order
        assert called == []
        assert capacity.version != version
        assert (await free_units())["shanghai-gpu"] == before["shanghai-gpu"] - 2
        engine = engine_of(m.seller)
        sale = store.get_sale(engine, "beijing", order["id"])
        assert sale is not None
        assert sale.state == "accepted"
        stored = federation_store.get_trade(engine, "beijing", order["id"])
        assert stored is not None
        assert (stored["status"], bytes(stored["response"])) == (201, sale.acceptance)
        assert claims.in_progress(engine, "beijing", 0) == []
        assert [kind for _, kind, _ in legs(m.seller, order["id"])] == ["pending", "pending"]
