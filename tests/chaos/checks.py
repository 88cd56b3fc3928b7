"""What must hold after a chaos run, read straight from both nodes' databases (past the proxy):

- every operation got a definite answer, and every accepted one took effect exactly once: each
  order is in the state its last accepted operation left it, settled for the hours asked, and
  each consumer's account moved by exactly the amounts its accepted settlements charged;
- the seller's sales agree with the buyer's orders, and the money between the two nodes matches
  on both sides;
- both ledgers balance: an audit bundle of each verifies offline with the node's key (replayed
  balances, debits equal credits, holds resolved once and in time), and the two reconcile with no
  discrepancy;
- no hold is open (none past its deadline, and after the drain none at all), no capacity stays
  reserved for a finished order or sale;
- no process logged a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

import ledger
from node.config import load_settings
from node.db import make_engine
from node.identity import load_identity
from node.trading.machine import ORDER_FINAL, SALE_FINAL
from node.trading.records import order_reservation, sale_reservation
from node.trading.tables import orders_t, reservations_t, sales_t
from tests.chaos.cluster import BUYER, LOCAL_OFFER, LOCAL_PRICE, PRICE, SELLER, Cluster
from tests.chaos.load import Load, Op
from tests.support.cli import cpnode

DRAIN_TIMEOUT_S = 120.0
ORDER_AFTER: dict[str, str] = {"settle": "settled", "cancel": "cancelled"}


def _rows(engine: Engine, table: sa.Table) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table)).all())


def unfinished(buyer: Engine, seller: Engine) -> list[str]:
    """Orders and sales that still have work to do (or a cancel to deliver)."""
    left = [
        f"order {row.id} {row.state}{' (cancel to deliver)' if row.notify_partner else ''}"
        for row in _rows(buyer, orders_t)
        if (row.state not in ORDER_FINAL and row.state != "accepted") or row.notify_partner
    ]
    left += [
        f"sale {row.trade_id} {row.state}"
        for row in _rows(seller, sales_t)
        if row.state not in SALE_FINAL and row.state != "accepted"
    ]
    return left


async def drain(buyer: Engine, seller: Engine, timeout_s: float = DRAIN_TIMEOUT_S) -> list[str]:
    """Wait for the nodes' upkeep to finish every order and sale; what is left at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = await asyncio.to_thread(unfinished, buyer, seller)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.5)


def _price(op: Op) -> int:
    return LOCAL_PRICE if op.body["offer_id"] == LOCAL_OFFER else PRICE


def check_operations(load: Load, buyer: Engine, seller: Engine) -> tuple[list[str], dict[str, int]]:  # noqa: C901 (one check per operation kind)
    """Every operation answered, and each accepted one took effect exactly once; (problems, figures)."""
    problems: list[str] = []
    orders = {row.id: row for row in _rows(buyer, orders_t)}
    sales = {row.trade_id: row for row in _rows(seller, sales_t)}
    placed = {op.order_id: op for op in load.ops if op.kind == "place"}
    charged: dict[str, int] = defaultdict(int)
    partner_charged = 0
    lost = 0
    for op in load.ops:
        if op.status is None:
            lost += 1
            problems.append(f"{op.kind} {op.order_id}: no definite answer after {op.attempts} attempts")
    for order_id, op in placed.items():
        row = orders.get(order_id)
        after = [o for o in load.ops if o.order_id == order_id and o.kind != "place"]
        if op.status == 201:
            if row is None:
                lost += 1
                problems.append(f"order {order_id} was accepted (201) but is not stored")
                continue
            done = [o for o in after if o.ok]
            if len(done) != 1:
                problems.append(f"order {order_id}: {len(done)} accepted settle/cancel, expected 1")
                continue
            final = done[0]
            if row.state != ORDER_AFTER[final.kind]:
                lost += 1
                problems.append(f"order {order_id} is {row.state} after an accepted {final.kind}")
                continue
            if final.kind == "settle":
                used = int(op.body["units"]) * int(final.body["used_hours"]) * _price(op)
                if (row.used_hours, row.settled_amount) != (final.body["used_hours"], used):
                    problems.append(
                        f"order {order_id} settled {row.used_hours} h for {row.settled_amount}, "
                        f"asked {final.body['used_hours']} h for {used}"
                    )
                charged[op.consumer] += used
                if row.partner is not None:
                    partner_charged += used
            problems += _sale_matches(order_id, row, sales.get(order_id))
        elif op.status is not None:
            for other in after:
                problems.append(f"{other.kind} {order_id} sent after the placement answered {op.status}")
            if row is not None and row.state not in ("rejected", "cancelled"):
                problems.append(f"order {order_id} answered {op.status} but is {row.state}")
            if row is not None and row.partner is not None:
                sale = sales.get(order_id)
                if sale is not None and sale.state not in ("refused", "voided", "cancelled"):
                    problems.append(f"sale {order_id} is {sale.state} for a refused order")
    for op in load.ops:
        if op.kind != "place" and op.status is not None and not op.ok:
            problems.append(f"{op.kind} {op.order_id} answered {op.status} {op.answer.get('error')}")
    strangers = sorted(set(orders) - set(placed))
    if strangers:
        problems.append(f"orders no consumer placed: {strangers[:5]}")
    problems += _accounts_match(load, buyer, seller, charged, partner_charged)
    figures = {
        "orders": len(orders),
        "sales": len(sales),
        "settled": sum(1 for row in orders.values() if row.state == "settled"),
        "cancelled": sum(1 for row in orders.values() if row.state == "cancelled"),
        "rejected": sum(1 for row in orders.values() if row.state == "rejected"),
        "charged": sum(charged.values()),
        "lost": lost,
    }
    return problems, figures


def _sale_matches(order_id: str, order: Any, sale: Any) -> list[str]:
    """The seller's sale of a partner order ended as the order did."""
    if order.partner is None:
        return []
    if sale is None:
        return [f"order {order_id} was accepted by {order.partner}, which has no sale for it"]
    if order.state == "settled" and order.settled_amount:
        if (sale.state, sale.settled_amount) != ("settled", order.settled_amount):
            return [
                f"sale {order_id} is {sale.state} {sale.settled_amount}, order settled {order.settled_amount}"
            ]
    elif sale.state not in ("voided", "cancelled"):
        return [f"sale {order_id} is {sale.state}, its order {order.state} for 0"]
    return []


def _accounts_match(
    load: Load, buyer: Engine, seller: Engine, charged: dict[str, int], partner_charged: int
) -> list[str]:
    """Each consumer paid exactly what its accepted settlements charged; the two nodes agree."""
    problems = []
    accounts = {a.id: a.balance for a in ledger.list_accounts(buyer)}
    for consumer in load.consumers:
        balance = accounts[f"consumer:{consumer.name}"]
        expected = (0, charged[consumer.name], 0, consumer.deposit)
        if balance.as_tuple() != expected:
            problems.append(f"consumer {consumer.name}: balance {balance.as_tuple()}, expected {expected}")
    owed = accounts.get(f"partner:{SELLER}")
    theirs = {a.id: a.balance for a in ledger.list_accounts(seller)}.get(f"partner:{BUYER}")
    ours_posted = owed.credits_posted if owed else 0
    theirs_posted = theirs.debits_posted if theirs else 0
    if not ours_posted == theirs_posted == partner_charged:
        problems.append(
            f"between the nodes: {BUYER} owes {ours_posted}, {SELLER} is owed {theirs_posted}, "
            f"accepted settlements charged {partner_charged}"
        )
    return problems


def check_holds_and_reservations(engine: Engine, name: str) -> list[str]:
    """No hold left open (pending balances all zero) and no reservation of a finished order or sale."""
    problems = [
        f"{name}: account {a.id} has pending {a.balance.debits_pending}/{a.balance.credits_pending}"
        for a in ledger.list_accounts(engine)
        if a.balance.debits_pending or a.balance.credits_pending
    ]
    with engine.connect() as conn:
        held = conn.execute(
            sa.select(reservations_t.c.id).where(reservations_t.c.released_ts.is_(None))
        ).all()
    finished = {order_reservation(row.id) for row in _rows(engine, orders_t) if row.state in ORDER_FINAL}
    finished |= {
        sale_reservation(row.partner, row.trade_id)
        for row in _rows(engine, sales_t)
        if row.state in SALE_FINAL
    }
    problems += [f"{name}: reservation {row.id} still held" for row in held if row.id in finished]
    return problems


def check_ledger_verifies(config: Path, engine: Engine, out: Path) -> list[str]:
    """Export an audit bundle of the node's whole ledger and verify it offline with its public key."""
    settings = load_settings(config, environ={})
    identity = load_identity(settings)
    origin = ledger.origin_for(settings.node.name)
    try:
        ledger.export_bundle(engine, out, identity.signing_key, origin)
        ledger.verify_bundle(out, identity.signing_key.verify_key)
    except ledger.LedgerError as exc:
        return [f"{settings.node.name}: the audit bundle does not verify: {exc}"]
    return []


def check_reconciles(cluster: Cluster, from_ms: int, to_ms: int) -> list[str]:
    """The buyer reconciles the run's window with the seller over the peer API: no discrepancy."""
    while time.time() * 1000 <= to_ms + 1000:
        time.sleep(0.05)  # the seller answers only for a window that has closed
    code, output = cpnode(
        "ledger",
        "reconcile",
        "--partner",
        SELLER,
        "--window",
        f"{from_ms}/{to_ms}",
        "--margin-s",
        "0",
        "--json",
        config=cluster.buyer_config,
    ).merged
    if code != 0:
        return [f"reconciliation with {SELLER} found discrepancies or failed ({code}): {output[-2000:]}"]
    outcome = json.loads(output)
    return [] if not outcome.get("discrepancies") else [f"discrepancies: {outcome['discrepancies']}"]


def check_logs(cluster: Cluster) -> list[str]:
    """No process logged a traceback (each named with its first one)."""
    problems = []
    for name, text in cluster.logs().items():
        if "Traceback" in text:
            start = text.index("Traceback")
            before = text.rfind("\n", 0, max(0, start - 1))
            problems.append(f"{name} logged a traceback:\n{text[before + 1 : start + 3000]}")
    return problems


def engines(cluster: Cluster) -> tuple[Engine, Engine]:
    """Engines on the buyer's and the seller's schemas that bypass the proxy."""
    buyer_schema, seller_schema = cluster.schemas
    return make_engine(cluster.direct_url(buyer_schema)), make_engine(cluster.direct_url(seller_schema))
