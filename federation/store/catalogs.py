"""Catalogs: those this node issued to each partner (byte for byte), those it received, and the
events (rejections, alerts) of receiving them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from federation.catalog import CatalogHead, ReceivedCatalog
from federation.store.db import writing
from federation.tables import events_t, issued_t, received_t


@dataclass(frozen=True)
class IssuedCatalog:
    """A catalog this node made for a partner, stored byte for byte."""

    partner: str
    head: CatalogHead
    content_sha256: str
    offer_count: int
    body: bytes


def latest_issued(engine: Engine, partner: str) -> IssuedCatalog | None:
    """The newest catalog issued to `partner`, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(issued_t)
            .where(issued_t.c.partner == partner)
            .order_by(issued_t.c.version.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    head = CatalogHead(row.version, row.sha256, row.issued_ts, row.expires_ts)
    return IssuedCatalog(row.partner, head, row.content_sha256, row.offer_count, row.body)


def latest_issued_head(engine: Engine, partner: str) -> tuple[CatalogHead, str] | None:
    """The newest catalog issued to `partner` without its body: (head, content hash), or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                issued_t.c.version,
                issued_t.c.sha256,
                issued_t.c.issued_ts,
                issued_t.c.expires_ts,
                issued_t.c.content_sha256,
            )
            .where(issued_t.c.partner == partner)
            .order_by(issued_t.c.version.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    return CatalogHead(row.version, row.sha256, row.issued_ts, row.expires_ts), row.content_sha256


def insert_issued(engine: Engine, catalog: IssuedCatalog) -> bool:
    """Store a newly issued catalog; False if another replica issued this version first."""
    with writing(engine) as conn:
        taken = conn.execute(
            sa.select(issued_t.c.version).where(
                issued_t.c.partner == catalog.partner, issued_t.c.version >= catalog.head.version
            )
        ).first()
        if taken is not None:
            return False
        conn.execute(
            issued_t.delete().where(
                issued_t.c.partner == catalog.partner, issued_t.c.version < catalog.head.version - 1
            )
        )
        conn.execute(
            issued_t.insert().values(
                partner=catalog.partner,
                version=catalog.head.version,
                sha256=catalog.head.sha256,
                content_sha256=catalog.content_sha256,
                issued_ts=catalog.head.issued_ts,
                expires_ts=catalog.head.expires_ts,
                offer_count=catalog.offer_count,
                body=catalog.body,
            )
        )
        return True


def received_head(engine: Engine, partner: str) -> CatalogHead | None:
    """The head of the last good catalog from `partner`, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                received_t.c.version, received_t.c.sha256, received_t.c.issued_ts, received_t.c.expires_ts
            ).where(received_t.c.partner == partner)
        ).first()
    return CatalogHead(row.version, row.sha256, row.issued_ts, row.expires_ts) if row else None


def store_received(engine: Engine, partner: str, catalog: ReceivedCatalog, body: bytes, now_ts: int) -> bool:
    """Replace `partner`'s stored catalog if `catalog` is still newer than it; False if not."""
    head = catalog.head
    with writing(engine) as conn:
        row = conn.execute(sa.select(received_t.c.version).where(received_t.c.partner == partner)).first()
        if row is not None and row.version >= head.version:
            return False
        if engine.dialect.name == "postgresql":
            # Feed positions must be given in commit order, or a receiver reading the relay feed
            # could pass a position another replica has not committed yet.
            conn.execute(sa.text("LOCK TABLE fed_received_catalogs IN SHARE ROW EXCLUSIVE MODE"))
        last = conn.execute(sa.select(sa.func.max(received_t.c.relay_seq))).scalar()
        conn.execute(received_t.delete().where(received_t.c.partner == partner))
        conn.execute(
            received_t.insert().values(
                partner=partner,
                republishable=catalog.republishable,
                relay_seq=int(last or 0) + 1,
                **accepted_row(catalog, body, now_ts),
            )
        )
        record_accepted(conn, partner, now_ts, f"version {head.version}, {len(catalog.offers)} offers")
        return True


def accepted_row(catalog: ReceivedCatalog, body: bytes, now_ts: int) -> dict[str, Any]:
    """The columns every stored catalog has (received directly or relayed)."""
    head = catalog.head
    return {
        "version": head.version,
        "sha256": head.sha256,
        "issued_ts": head.issued_ts,
        "expires_ts": head.expires_ts,
        "received_ts": now_ts,
        "offer_count": len(catalog.offers),
        "key_id": catalog.key_id,
        "body": body,
    }


def record_accepted(conn: Connection, partner: str, now_ts: int, message: str) -> None:
    """Record that a catalog from (or through) `partner` was accepted."""
    conn.execute(
        events_t.insert().values(partner=partner, at_ts=now_ts, kind="accepted", code="ok", message=message)
    )


def received_catalogs(
    engine: Engine, partner: str | None = None, bodies: bool = True
) -> list[dict[str, Any]]:
    """Stored partner catalogs (bodies included unless `bodies` is False), optionally of one partner."""
    columns = received_t.c if bodies else [c for c in received_t.c if c.name != "body"]
    query = sa.select(*columns).order_by(received_t.c.partner)
    if partner is not None:
        query = query.where(received_t.c.partner == partner)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def record_event(engine: Engine, partner: str, kind: str, code: str, message: str, now_ts: int) -> None:
    """Record why a catalog was rejected, or an alert (equivocation)."""
    with writing(engine) as conn:
        conn.execute(
            events_t.insert().values(
                partner=partner, at_ts=now_ts, kind=kind, code=code, message=message[:2000]
            )
        )


def catalog_events(engine: Engine, partner: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest catalog events, newest first."""
    query = sa.select(events_t).order_by(events_t.c.id.desc()).limit(limit)
    if partner is not None:
        query = query.where(events_t.c.partner == partner)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
