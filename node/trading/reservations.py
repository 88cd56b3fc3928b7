"""Capacity reservations: the units an open order or sale holds of an offer, reserved in the
transaction that opens the sale or places the order and released when it ends.

Capacity is reserved under a lock on the offer's capacity group, or on the offer when it shares
none (SQLite: the write transaction's `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory
lock), so two trades never both take the last free units: not of one offer, and not of one pool
region whose flavors share its capacity (a reservation of k units of an offer costing c takes k·c
of its group).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from node.db import write_transaction
from node.db.prepared import Prepared
from node.offers import CatalogOffer, group_of
from node.trading.tables import reservations_t

_ID: sa.BindParameter[str] = sa.bindparam("p_id")
_NOW: sa.BindParameter[int] = sa.bindparam("p_now")
_RELEASE = sa.update(reservations_t).where(reservations_t.c.id == _ID, reservations_t.c.released_ts.is_(None))
_RESERVATION = Prepared(sa.select(reservations_t).where(reservations_t.c.id == _ID))
_OPEN = sa.and_(reservations_t.c.released_ts.is_(None), reservations_t.c.expires_ts > _NOW)
_TAKEN_OF_OFFER = Prepared(
    sa.select(sa.func.coalesce(sa.func.sum(reservations_t.c.units), 0)).where(
        reservations_t.c.offer_id == sa.bindparam("p_offer"), _OPEN
    )
)
_TAKEN_OF_GROUP = Prepared(
    sa.select(sa.func.coalesce(sa.func.sum(reservations_t.c.group_units), 0)).where(
        reservations_t.c.capacity_group == sa.bindparam("p_group"), _OPEN
    )
)
_INSERT_RESERVATION = Prepared(sa.insert(reservations_t))
_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


@dataclass(frozen=True)
class Reserved:
    """What open, unexpired reservations hold: units by offer id, and units of each capacity group
    (in the group's own unit)."""

    by_offer: dict[str, int]
    by_group: dict[str, int]


def _lock(conn: Connection, key: str) -> None:
    """Serialise reservations of one offer or capacity group (SQLite: the write transaction does)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(b"cpnode-capacity:" + key.encode()).digest()[:8]
        conn.execute(_ADVISORY_LOCK, {"key": int.from_bytes(digest, "big", signed=True)})


def _open(now_ts: int) -> sa.ColumnElement[bool]:
    return sa.and_(reservations_t.c.released_ts.is_(None), reservations_t.c.expires_ts > now_ts)


def reserve_in(
    conn: Connection, reservation_id: str, offer: CatalogOffer, units: int, expires_ts: int, now_ts: int
) -> bool:
    """`reserve` inside a write transaction the caller holds (the trade claim's, an order's)."""
    offer_id, group = offer["id"], group_of(offer)
    _lock(conn, f"group:{group[0]}" if group is not None else f"offer:{offer_id}")
    existing = _RESERVATION.first(conn, {"p_id": reservation_id})
    if existing is not None:
        return existing["released_ts"] is None
    taken = _TAKEN_OF_OFFER.scalar(conn, {"p_offer": offer_id, "p_now": now_ts})
    if int(taken) + units > offer["free_units"]:
        return False
    group_units = None
    if group is not None:
        name, cost, free = group
        group_units = units * cost
        used = _TAKEN_OF_GROUP.scalar(conn, {"p_group": name, "p_now": now_ts})
        if int(used) + group_units > free:
            return False
    _INSERT_RESERVATION.rows(
        conn,
        {
            "id": reservation_id,
            "offer_id": offer_id,
            "units": units,
            "expires_ts": expires_ts,
            "released_ts": None,
            "created_ts": now_ts,
            "capacity_group": group[0] if group is not None else None,
            "group_units": group_units,
        },
    )
    return True


def reserve(
    engine: Engine, reservation_id: str, offer: CatalogOffer, units: int, expires_ts: int, now_ts: int
) -> bool:
    """Reserve `units` of an offer as its pool reports it (`offer`: raw free units, and its capacity
    group when it shares one), unless open reservations of the offer or of its group leave too few;
    idempotent by `reservation_id` (True again while it is held)."""
    with write_transaction(engine) as conn:
        return reserve_in(conn, reservation_id, offer, units, expires_ts, now_ts)


def reserved(engine: Engine, now_ts: int) -> Reserved:
    """What open, unexpired reservations hold, by offer and by capacity group (one query)."""
    r = reservations_t.c
    query = (
        sa.select(r.offer_id, r.capacity_group, sa.func.sum(r.units), sa.func.sum(r.group_units))
        .where(_open(now_ts))
        .group_by(r.offer_id, r.capacity_group)
    )
    by_offer: dict[str, int] = {}
    by_group: dict[str, int] = {}
    with engine.connect() as conn:
        for offer_id, group, units, group_units in conn.execute(query):
            by_offer[offer_id] = by_offer.get(offer_id, 0) + int(units)
            if group is not None:
                by_group[group] = by_group.get(group, 0) + int(group_units or 0)
    return Reserved(by_offer, by_group)


def reserved_units(engine: Engine, now_ts: int) -> dict[str, int]:
    """Units held by open, unexpired reservations, by offer id."""
    return reserved(engine, now_ts).by_offer


def release(conn: Connection, reservation_id: str, now_ts: int) -> None:
    """Release a capacity reservation (no-op if it is gone or released)."""
    conn.execute(_RELEASE, {"p_id": reservation_id, "released_ts": now_ts})


def release_reservation(engine: Engine, reservation_id: str, now_ts: int) -> None:
    """Release a capacity reservation on its own (its units are held some other way now, e.g. by
    the instance a task created on the pool); a no-op if it is gone or released."""
    with write_transaction(engine) as conn:
        release(conn, reservation_id, now_ts)
