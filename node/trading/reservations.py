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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbprep import Prepared
from node.db import write_transaction
from node.offers import CatalogOffer, group_of
from node.trading.tables import reservations_t

_ID: sa.BindParameter[str] = sa.bindparam("p_id")
_NOW: sa.BindParameter[int] = sa.bindparam("p_now")
_RELEASE = sa.update(reservations_t).where(reservations_t.c.id == _ID, reservations_t.c.released_ts.is_(None))
_RESERVATIONS = Prepared(
    sa.select(reservations_t).where(reservations_t.c.id.in_(sa.bindparam("p_ids", expanding=True)))
)
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


@dataclass(frozen=True)
class Wanted:
    """One reservation to take: its id, the offer as its pool reports it (raw free units, and its
    capacity group when it shares one), the units, until when, and the time it is taken at."""

    id: str
    offer: CatalogOffer
    units: int
    expires_ts: int
    now_ts: int


def reserve_in(
    conn: Connection, reservation_id: str, offer: CatalogOffer, units: int, expires_ts: int, now_ts: int
) -> bool:
    """`reserve` inside a write transaction the caller holds (the trade claim's, an order's)."""
    [reserved] = reserve_many_in(conn, [Wanted(reservation_id, offer, units, expires_ts, now_ts)])
    return reserved


def reserve_many_in(conn: Connection, wanted: Sequence[Wanted]) -> list[bool]:
    """Take each reservation of `wanted` (whether it holds), exactly as `reserve_in` would one
    after another, inside the caller's write transaction: the locks of their offers or groups
    first (in order), one read of those already stored, one sum of what is taken per offer or
    group and time, and one insert for the new ones."""
    for key in sorted({_lock_key(item.offer) for item in wanted}):
        _lock(conn, key)
    stored = _stored(conn, [item.id for item in wanted])
    taken: dict[tuple[str, str, int], int] = {}  # what was stored before, by offer or group and time
    new: list[dict[str, Any]] = []
    out: list[bool] = []
    for item in wanted:
        existing = stored.get(item.id)
        if existing is not None:
            out.append(existing["released_ts"] is None)
            continue
        row = _admitted(conn, item, taken, new)
        if row is not None:
            new.append(row)
            stored[item.id] = row
        out.append(row is not None)
    _INSERT_RESERVATION.many(conn, new)
    return out


def _lock_key(offer: CatalogOffer) -> str:
    group = group_of(offer)
    return f"group:{group[0]}" if group is not None else f"offer:{offer['id']}"


def _stored(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored reservations among `ids`, by id."""
    return {row["id"]: row for row in _RESERVATIONS.rows(conn, {"p_ids": ids})}


def _admitted(
    conn: Connection, item: Wanted, taken: dict[tuple[str, str, int], int], new: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The row of `item`'s reservation if the open reservations of its offer (and group) leave
    enough: those stored (summed once per offer or group and time, in `taken`) and the `new` ones
    taken before it; None if not."""
    offer_id, group, now = item.offer["id"], group_of(item.offer), item.now_ts
    key = ("offer", offer_id, now)
    if key not in taken:
        taken[key] = int(_TAKEN_OF_OFFER.scalar(conn, {"p_offer": offer_id, "p_now": now}))
    units = taken[key] + sum(r["units"] for r in new if r["offer_id"] == offer_id and r["expires_ts"] > now)
    if units + item.units > item.offer["free_units"]:
        return None
    group_units = None
    if group is not None:
        name, cost, free = group
        group_units = item.units * cost
        key = ("group", name, now)
        if key not in taken:
            taken[key] = int(_TAKEN_OF_GROUP.scalar(conn, {"p_group": name, "p_now": now}))
        used = taken[key] + sum(
            r["group_units"] for r in new if r["capacity_group"] == name and r["expires_ts"] > now
        )
        if used + group_units > free:
            return None
    return {
        "id": item.id,
        "offer_id": offer_id,
        "units": item.units,
        "expires_ts": item.expires_ts,
        "released_ts": None,
        "created_ts": now,
        "capacity_group": group[0] if group is not None else None,
        "group_units": group_units,
    }


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
