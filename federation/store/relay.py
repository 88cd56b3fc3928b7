"""The star case in the database (see `federation.relay`).

On an aggregator: the feed of re-publishable partner catalogs it holds (`fed_received_catalogs`
rows marked re-publishable, ordered by the feed position `relay_seq` they were stored at).
On a receiver: the issuers it trusts through aggregators (`fed_issuers`), the relayed catalogs it
accepted, by (aggregator, issuer), and how far it has read each aggregator's feed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from federation.catalog import CatalogHead, ReceivedCatalog
from federation.errors import ConflictError, NotFoundError
from federation.relay import Issuer, RelayEntry
from federation.store.catalogs import accepted_row, record_accepted
from federation.store.db import writing
from federation.tables import issuers_t, received_t, relay_cursors_t, relayed_t

# --- on the aggregator ---------------------------------------------------------------------------


def _relayable(issuers: Collection[str] | None, audience: str, now_ts: int) -> sa.ColumnElement[bool]:
    condition = sa.and_(
        received_t.c.republishable.is_(True),
        received_t.c.expires_ts > now_ts,
        received_t.c.partner != audience,
    )
    return condition if issuers is None else sa.and_(condition, received_t.c.partner.in_(list(issuers)))


def relay_position(engine: Engine, issuers: Collection[str] | None, audience: str, now_ts: int) -> int:
    """The newest feed position among catalogs of `issuers` (None: any) that may be relayed to
    `audience` (never its own); 0 if none."""
    if issuers is not None and not issuers:
        return 0
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(sa.func.max(received_t.c.relay_seq)).where(_relayable(issuers, audience, now_ts))
        ).scalar()
    return int(value or 0)


def relay_feed(
    engine: Engine, issuers: Collection[str] | None, audience: str, since: int, now_ts: int, limit: int
) -> list[RelayEntry]:
    """Catalogs of `issuers` (None: any) relayable to `audience`, stored after feed position `since`,
    oldest first."""
    if issuers is not None and not issuers:
        return []
    query = (
        sa.select(
            received_t.c.partner,
            received_t.c.version,
            received_t.c.sha256,
            received_t.c.expires_ts,
            received_t.c.relay_seq,
        )
        .where(_relayable(issuers, audience, now_ts), received_t.c.relay_seq > since)
        .order_by(received_t.c.relay_seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            RelayEntry(r.partner, r.version, r.sha256, r.expires_ts, r.relay_seq) for r in conn.execute(query)
        ]


def relayable_body(engine: Engine, issuer: str, audience: str, now_ts: int) -> bytes | None:
    """The bytes of `issuer`'s catalog as it signed them for us, if it may be relayed to `audience`."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(received_t.c.body).where(_relayable([issuer], audience, now_ts))).first()
    return bytes(row.body) if row is not None else None


# --- on a receiver -------------------------------------------------------------------------------


def list_issuers(engine: Engine) -> list[Issuer]:
    """The issuers this node trusts through aggregators, by name."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(issuers_t).order_by(issuers_t.c.name))
        return [Issuer(row.name, row.public_key, row.source) for row in rows]


def get_issuer(engine: Engine, name: str) -> Issuer | None:
    """The trusted issuer called `name`, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(issuers_t).where(issuers_t.c.name == name)).first()
    return Issuer(row.name, row.public_key, row.source) if row is not None else None


def _restart_feeds(conn: sa.Connection) -> None:
    # Entries skipped while an issuer was not trusted (or trusted with another key) are in the
    # part of each feed already read: read every feed from its start again.
    conn.execute(relay_cursors_t.delete())


def add_issuer(engine: Engine, issuer: Issuer, now_ts: int) -> None:
    """Trust `issuer`'s pinned key for catalogs relayed by aggregators; ConflictError if the name is taken."""
    with writing(engine) as conn:
        if conn.execute(sa.select(issuers_t.c.name).where(issuers_t.c.name == issuer.name)).first():
            raise ConflictError(f"issuer {issuer.name!r} is already trusted; remove it first")
        conn.execute(
            issuers_t.insert().values(
                name=issuer.name, public_key=issuer.public_key, source=issuer.source, added_ts=now_ts
            )
        )
        _restart_feeds(conn)


def remove_issuer(engine: Engine, name: str) -> None:
    """Stop trusting an issuer added from the CLI, and drop the catalogs relayed from it."""
    with writing(engine) as conn:
        row = conn.execute(sa.select(issuers_t.c.source).where(issuers_t.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no trusted issuer called {name!r}")
        if row.source == "config":
            raise ConflictError(f"issuer {name!r} comes from the config file; remove it there")
        conn.execute(relayed_t.delete().where(relayed_t.c.issuer == name))
        conn.execute(issuers_t.delete().where(issuers_t.c.name == name))


def sync_config_issuers(engine: Engine, issuers: Iterable[Issuer], now_ts: int) -> None:
    """Make the `config` issuers in the database equal `issuers` (CLI-added ones are kept)."""
    wanted = {issuer.name: issuer for issuer in issuers}
    with writing(engine) as conn:
        rows = {row.name: row for row in conn.execute(sa.select(issuers_t))}
        changed = False
        for name, row in rows.items():
            if row.source == "config" and (name not in wanted or wanted[name].public_key != row.public_key):
                conn.execute(relayed_t.delete().where(relayed_t.c.issuer == name))
                conn.execute(issuers_t.delete().where(issuers_t.c.name == name))
                changed = True
        for name, issuer in wanted.items():
            current = rows.get(name)
            if current is None or (current.source == "config" and current.public_key != issuer.public_key):
                conn.execute(
                    issuers_t.insert().values(
                        name=name, public_key=issuer.public_key, source="config", added_ts=now_ts
                    )
                )
                changed = True
        if changed:
            _restart_feeds(conn)


def relay_cursor(engine: Engine, via: str) -> int:
    """How far this node has read `via`'s relay feed (0: not at all)."""
    with engine.connect() as conn:
        value = conn.execute(sa.select(relay_cursors_t.c.seq).where(relay_cursors_t.c.via == via)).scalar()
    return int(value or 0)


def set_relay_cursor(engine: Engine, via: str, seq: int) -> None:
    """Record that `via`'s relay feed has been read up to position `seq`."""
    with writing(engine) as conn:
        conn.execute(relay_cursors_t.delete().where(relay_cursors_t.c.via == via))
        conn.execute(relay_cursors_t.insert().values(via=via, seq=seq))


def relayed_head(engine: Engine, via: str, issuer: str) -> CatalogHead | None:
    """The head of the last good catalog of `issuer` relayed by `via`, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                relayed_t.c.version, relayed_t.c.sha256, relayed_t.c.issued_ts, relayed_t.c.expires_ts
            ).where(relayed_t.c.via == via, relayed_t.c.issuer == issuer)
        ).first()
    return CatalogHead(row.version, row.sha256, row.issued_ts, row.expires_ts) if row else None


def store_relayed(
    engine: Engine, via: str, issuer: str, catalog: ReceivedCatalog, body: bytes, now_ts: int
) -> bool:
    """Replace the stored catalog of `issuer` relayed by `via` if `catalog` is newer; False if not."""
    head = catalog.head
    with writing(engine) as conn:
        where = (relayed_t.c.via == via, relayed_t.c.issuer == issuer)
        row = conn.execute(sa.select(relayed_t.c.version).where(*where)).first()
        if row is not None and row.version >= head.version:
            return False
        conn.execute(relayed_t.delete().where(*where))
        conn.execute(relayed_t.insert().values(via=via, issuer=issuer, **accepted_row(catalog, body, now_ts)))
        message = f"relayed catalog of {issuer}: version {head.version}, {len(catalog.offers)} offers"
        record_accepted(conn, via, now_ts, message)
        return True


def relayed_catalogs(engine: Engine, via: str | None = None) -> list[dict[str, Any]]:
    """Stored relayed catalogs (bodies included), optionally of one aggregator."""
    query = sa.select(relayed_t).order_by(relayed_t.c.via, relayed_t.c.issuer)
    if via is not None:
        query = query.where(relayed_t.c.via == via)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
