"""Placing a consumer's order in the database: what placing reads (the consumer, the order, the
ledger account, the partner with its keys, deny-list and session, the offer) and the insert of the
order with its hold and its moves, one order alone or a group of them in one durable transaction
(their holds in one ledger write; after one order fails, a savepoint each, so one order's refusal
touches no other). The buyer (node.trading.buyer) calls these; nothing here awaits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Connection, Engine

import ledger
from federation import store as federation_store
from federation.partners import Partner
from node.accounts import store as accounts
from node.db import write_transaction
from node.offers import CatalogOffer
from node.peering.offers import partner_offer_in
from node.trading import store
from node.trading.steps import CallView, Move
from node.trading.store import Order


@dataclass(frozen=True)
class Placing:
    """What placing an order reads first, in one trip to a database thread: the order if it exists,
    whether its consumer's account does, and (for a partner's offer) the partner and that offer of
    its current catalog (None if it has none)."""

    order: Order | None
    consumer_exists: bool
    partner: Partner | None
    partner_offer: CatalogOffer | None
    created: Order | None = None  # the new order, when placing inserted it in the same trip
    # What calling the partner reads (its keys, the deny-list, our session at it), read here so
    # that the trade request needs no trip of its own (`OrderSteps.calls`).
    call: CallView | None = None


def read_for_placing(
    engine: Engine,
    order_id: str,
    consumer_account: str,
    partner: str | None,
    offer_id: str,
    now_ts: int,
    active: str | None = None,
    values_of: Callable[[Placing], dict[str, Any]] | None = None,
    holding: Callable[[Order], tuple[list[ledger.TransferRequest], list[Move]]] | None = None,
) -> Placing:
    """The reads of `Placing` (the others are skipped when the order exists already), in one
    transaction. `active`: a consumer whose account must be active first
    (`accounts.require_active`). `values_of`: for a new order, the row it makes of the read,
    inserted in the same transaction: a write transaction then (lazily committed), so no other
    writer takes the order's id between the read and the insert. `holding`: what the new order
    writes next (`OrderSteps.holding`: its hold, and its moves), written in the same transaction
    too, durably, as `node.trading.holding.move_order_holding` writes them (the ledger first); a
    hold the ledger refuses is committed alone, and the order is left `new` for its step to
    reject."""
    if values_of is None:
        with engine.connect() as conn:
            return _placing_reads(conn, order_id, consumer_account, partner, offer_id, now_ts, active)
    call = PlacingCall(order_id, consumer_account, partner, offer_id, now_ts, active, values_of, holding)
    with write_transaction(engine, lazy=holding is None) as conn:
        read, batch = _place_in(conn, call)
    if batch is not None:
        batch.committed()
    return read


@dataclass(frozen=True)
class PlacingCall:
    """The arguments of one `read_for_placing` that inserts its order (`values_of` given)."""

    order_id: str
    consumer_account: str
    partner: str | None
    offer_id: str
    now_ts: int
    active: str | None
    values_of: Callable[[Placing], dict[str, Any]]
    holding: Callable[[Order], tuple[list[ledger.TransferRequest], list[Move]]] | None = None
    # The id was chosen by this node for this call (96 random bits): no order can have it, so
    # placing does not look it up (a client's own id is looked up: a retry finds its order).
    fresh: bool = False


def place_group(engine: Engine, calls: Sequence[PlacingCall]) -> list[Placing | Exception]:
    """Several new partner orders' `read_for_placing` (each with `holding`) in one durable write
    transaction; one order's refusal or failure rolls back only itself (after one fails, the group
    runs again with a savepoint per order). One result per call: its Placing, or the error it raised."""
    try:  # as a rule no order fails: no savepoints (two statements an order) unless one does
        return _place_together(engine, calls, isolated=False)
    except Exception:  # rolled back whole: again, each order in a savepoint
        return _place_together(engine, calls, isolated=True)


def _place_together(
    engine: Engine, calls: Sequence[PlacingCall], isolated: bool
) -> list[Placing | Exception]:
    """`place_group`'s transaction: with `isolated`, each order in a savepoint and its error its
    result; else the first error rolls back the whole transaction and is raised (the orders'
    holds in one ledger write when their ids are distinct)."""
    with write_transaction(engine) as conn:
        out, committed = _placed_in(conn, calls, isolated)
    committed()
    return out


def place_group_in(
    conn: Connection, calls: Sequence[PlacingCall]
) -> tuple[list[Placing | Exception], Callable[[], None]]:
    """`place_group`'s writes inside the caller's write transaction, without savepoints: an order's
    error is raised (the caller rolls back, then places the group with `place_group`). The results,
    and what to call once the transaction has committed (its ledger batches marked committed)."""
    return _placed_in(conn, calls, isolated=False)


def _placed_in(
    conn: Connection, calls: Sequence[PlacingCall], isolated: bool
) -> tuple[list[Placing | Exception], Callable[[], None]]:
    """`_place_together`'s writes in `conn`; and the call marking their ledger batches committed."""
    out: list[Placing | Exception] = []
    batches: list[ledger.JoinedBatch] = []
    seen: dict[tuple[str, ...], Any] = {}
    ids = [call.order_id for call in calls]
    together = not isolated and len(set(ids)) == len(ids) and all(call.holding for call in calls)
    if together:
        reads, batch = _place_all_in(conn, calls, seen)
        out += reads
        batches += [batch] if batch is not None else []
    for call in () if together else calls:
        if not isolated:
            read, batch = _place_in(conn, call, seen)
        else:
            try:
                with conn.begin_nested():
                    read, batch = _place_in(conn, call, seen)
            except Exception as exc:  # this order's; the others go on
                out.append(exc)
                continue
        out.append(read)
        if batch is not None:
            batches.append(batch)

    def committed() -> None:
        for batch in batches:  # in the order they were written: the last one's cache is current
            batch.committed()

    return out, committed


def _place_in(
    conn: Connection, call: PlacingCall, seen: dict[tuple[str, ...], Any] | None = None
) -> tuple[Placing, ledger.JoinedBatch | None]:
    """`read_for_placing`'s reads and writes inside the caller's write transaction; the ledger batch
    to mark committed once it has committed (None when nothing was submitted). `seen`: the reads
    shared by the orders of one transaction (`_placing_reads`)."""
    read = _placing_reads(
        conn,
        call.order_id,
        call.consumer_account,
        call.partner,
        call.offer_id,
        call.now_ts,
        call.active,
        seen,
        call.fresh,
    )
    if read.order is not None:
        return read, None
    values = call.values_of(read)
    if call.holding is None:
        return replace(read, created=store.insert_new_order_in(conn, values)), None
    draft = store.draft_order(values)
    legs, moves = call.holding(draft)
    batch = ledger.submit_in(conn, legs)
    if not batch.ok:  # left `new` for its step to reject
        return replace(read, created=store.insert_new_order_in(conn, values)), batch
    return replace(read, created=store.insert_moved_order_in(conn, values, moves, call.now_ts)), batch


def _place_all_in(
    conn: Connection, calls: Sequence[PlacingCall], seen: dict[tuple[str, ...], Any]
) -> tuple[list[Placing], ledger.JoinedBatch | None]:
    """The orders of `calls` (their ids distinct, each with `holding`) placed as `_place_in` would
    place them one after another, with the holds of the new ones in one ledger write: their
    Placings, and that write's batch (None when there was none)."""
    reads = [
        _placing_reads(
            conn, c.order_id, c.consumer_account, c.partner, c.offer_id, c.now_ts, c.active, seen, c.fresh
        )
        for c in calls
    ]
    new: list[tuple[int, dict[str, Any], list[ledger.TransferRequest], list[Move]]] = []
    for index, (call, read) in enumerate(zip(calls, reads, strict=True)):
        if read.order is None and call.holding is not None:
            values = call.values_of(read)
            new.append((index, values, *call.holding(store.draft_order(values))))
    if not new:
        return reads, None
    batch = ledger.submit_batches_in(conn, [legs for _, _, legs, _ in new])
    held = [all(result.ok for result in results) for results in batch.batches]
    moved = iter(
        store.insert_moved_orders_in(
            conn,
            [
                (values, moves, calls[index].now_ts)
                for (index, values, _, moves), ok in zip(new, held, strict=True)
                if ok
            ],
        )
    )
    for (index, values, _, _), ok in zip(new, held, strict=True):
        # An order whose hold the ledger refused is left `new`, for its step to reject.
        created = next(moved) if ok else store.insert_new_order_in(conn, values)
        reads[index] = replace(reads[index], created=created)
    return reads, batch


def _placing_reads(
    conn: Connection,
    order_id: str,
    consumer_account: str,
    partner: str | None,
    offer_id: str,
    now_ts: int,
    active: str | None,
    seen: dict[tuple[str, ...], Any] | None = None,
    fresh: bool = False,
) -> Placing:
    """`seen`: what earlier orders of the same transaction read (the consumer's account, the
    partner's view, the offer), reused: nothing in a placing transaction changes them. `fresh`:
    the order's id was just chosen by this node, so it is not looked up."""
    memo: dict[tuple[str, ...], Any] = {} if seen is None else seen
    if active is not None and ("active", active) not in memo:
        accounts.require_active_in(conn, "consumer", active)
        memo["active", active] = True
    order = None if fresh else store.get_order_in(conn, order_id)
    if order is not None:
        return Placing(order, True, None, None)
    if ("account", consumer_account) not in memo:
        try:
            ledger.get_account_in(conn, consumer_account)
        except ledger.NotFoundError:
            return Placing(None, False, None, None)
        memo["account", consumer_account] = True
    call = None
    if partner is not None:
        call = memo.get(("view", partner)) or federation_store.call_view_in(conn, partner)
        memo["view", partner] = call
    found = None if call is None else call[0].partner
    offer = None
    if found is not None:
        key = ("offer", found.name, offer_id, str(now_ts))
        offer = memo[key] if key in memo else partner_offer_in(conn, now_ts, found.name, offer_id)
        memo[key] = offer
    return Placing(None, True, found, offer, call=call)
