"""Queries over the federation tables (defined in `tables`, created by migrations/versions/).

Synchronous SQLAlchemy Core; the aiohttp edges call these through `asyncio.to_thread`. Writes run
in one write transaction each (`cpnode_write` makes SQLite take its lock up front), so nothing is
ever half-applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from federation.catalog import CatalogHead, ReceivedCatalog
from federation.errors import ConflictError, NotFoundError
from federation.keydoc import KeyRecord, merge_records
from federation.login import Challenge, transition
from federation.partners import Agreement, Partner
from federation.tables import (
    challenges_t,
    denied_t,
    discovered_t,
    events_t,
    issued_t,
    partners_t,
    peer_keys_t,
    received_t,
    sessions_t,
    sync_t,
    trades_t,
)


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction (SQLite BEGIN IMMEDIATE), committed when the block ends without error."""
    with engine.connect().execution_options(cpnode_write=True) as conn, conn.begin():
        yield conn


# --- partners -----------------------------------------------------------------------------------


def _partner(row: Any) -> Partner:
    return Partner(
        row.name,
        tuple(json.loads(row.urls_json)),
        row.public_key,
        Agreement.from_json(json.loads(row.agreement_json)),
        row.source,
    )


def _partner_values(partner: Partner) -> dict[str, Any]:
    return {
        "urls_json": json.dumps(list(partner.urls)),
        "public_key": partner.public_key,
        "agreement_json": json.dumps(partner.agreement.to_json(), sort_keys=True),
        "source": partner.source,
    }


def list_partners(engine: Engine) -> list[Partner]:
    """Every trusted partner, by name."""
    with engine.connect() as conn:
        return [_partner(row) for row in conn.execute(sa.select(partners_t).order_by(partners_t.c.name))]


def get_partner(engine: Engine, name: str) -> Partner | None:
    """The partner called `name`, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(partners_t).where(partners_t.c.name == name)).first()
    return _partner(row) if row is not None else None


def add_partner(engine: Engine, partner: Partner, now_ts: int, replace: bool = False) -> None:
    """Pin a new partner; ConflictError if the name is taken (unless `replace`)."""
    with writing(engine) as conn:
        exists = conn.execute(sa.select(partners_t.c.source).where(partners_t.c.name == partner.name)).first()
        if exists is not None and not replace:
            raise ConflictError(f"partner {partner.name!r} already exists; remove it first")
        if exists is not None:
            conn.execute(
                partners_t.update().where(partners_t.c.name == partner.name).values(_partner_values(partner))
            )
        else:
            conn.execute(
                partners_t.insert().values(name=partner.name, added_ts=now_ts, **_partner_values(partner))
            )


def remove_partner(engine: Engine, name: str) -> None:
    """Forget a partner added from the CLI (with its keys, session and catalog)."""
    with writing(engine) as conn:
        row = conn.execute(sa.select(partners_t.c.source).where(partners_t.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no partner called {name!r}")
        if row.source == "config":
            raise ConflictError(f"partner {name!r} comes from the config file; remove it there")
        for table in (peer_keys_t, sessions_t, received_t, sync_t):
            conn.execute(table.delete().where(table.c.partner == name))
        conn.execute(partners_t.delete().where(partners_t.c.name == name))


def sync_config_partners(engine: Engine, partners: Iterable[Partner], now_ts: int) -> None:
    """Make the `config` partners in the database equal `partners` (CLI-added ones are kept)."""
    wanted = {p.name: p for p in partners}
    with writing(engine) as conn:
        rows = {row.name: row for row in conn.execute(sa.select(partners_t))}
        for name, row in rows.items():
            if row.source == "config" and name not in wanted:
                for table in (peer_keys_t, sessions_t, received_t, sync_t):
                    conn.execute(table.delete().where(table.c.partner == name))
                conn.execute(partners_t.delete().where(partners_t.c.name == name))
        for name, partner in wanted.items():
            if name in rows:
                if rows[name].public_key != partner.public_key:
                    conn.execute(peer_keys_t.delete().where(peer_keys_t.c.partner == name))
                conn.execute(
                    partners_t.update().where(partners_t.c.name == name).values(_partner_values(partner))
                )
            else:
                conn.execute(
                    partners_t.insert().values(name=name, added_ts=now_ts, **_partner_values(partner))
                )


# --- keys ---------------------------------------------------------------------------------------


def denied_keys(engine: Engine) -> set[str]:
    """Key ids on the deny-list."""
    with engine.connect() as conn:
        return {row.kid for row in conn.execute(sa.select(denied_t.c.kid))}


def deny_key(engine: Engine, kid: str, reason: str, now_ts: int) -> bool:
    """Put `kid` on the deny-list; False if it already was."""
    with writing(engine) as conn:
        if conn.execute(sa.select(denied_t.c.kid).where(denied_t.c.kid == kid)).first() is not None:
            return False
        conn.execute(denied_t.insert().values(kid=kid, reason=reason, denied_ts=now_ts))
        conn.execute(sessions_t.delete().where(sessions_t.c.kid == kid))
        return True


def list_denied(engine: Engine) -> list[dict[str, Any]]:
    """The deny-list with reasons and times."""
    with engine.connect() as conn:
        return [
            dict(row._mapping) for row in conn.execute(sa.select(denied_t).order_by(denied_t.c.denied_ts))
        ]


def peer_keys(engine: Engine, partner: str) -> tuple[dict[str, KeyRecord], int]:
    """Keys learned from `partner`'s key documents, and the latest document's expiry (0 if none)."""
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(peer_keys_t).where(peer_keys_t.c.partner == partner)))
    records = {r.kid: KeyRecord(r.kid, r.public_key, r.status, r.valid_from_ts, r.retired_ts) for r in rows}
    return records, min((r.document_expires_ts for r in rows), default=0)


def merge_peer_keys(
    engine: Engine, partner: str, fresh: Mapping[str, KeyRecord], expires_ts: int, now_ts: int
) -> dict[str, KeyRecord]:
    """Merge the trusted keys of `partner`'s latest key document into what was learned before
    (`keydoc.merge_records`: retired keys stay retired, unlisted keys are kept); return the result."""
    with writing(engine) as conn:
        rows = conn.execute(sa.select(peer_keys_t).where(peer_keys_t.c.partner == partner))
        known = {r.kid: KeyRecord(r.kid, r.public_key, r.status, r.valid_from_ts, r.retired_ts) for r in rows}
        merged = merge_records(known, fresh, now_ts)
        conn.execute(peer_keys_t.delete().where(peer_keys_t.c.partner == partner))
        for record in merged.values():
            conn.execute(
                peer_keys_t.insert().values(
                    partner=partner,
                    kid=record.kid,
                    public_key=record.public_key,
                    status=record.status,
                    valid_from_ts=record.valid_from_ts,
                    retired_ts=record.retired_ts,
                    document_expires_ts=expires_ts,
                )
            )
    return merged


# --- login challenges and outbound sessions -----------------------------------------------------


def store_challenge(engine: Engine, challenge: Challenge, now_ts: int) -> None:
    """Store a new challenge (and drop long-dead ones so the table stays small)."""
    with writing(engine) as conn:
        conn.execute(challenges_t.delete().where(challenges_t.c.expires_ts < now_ts - 3600))
        conn.execute(
            challenges_t.insert().values(
                challenge=challenge.value,
                partner=challenge.partner,
                node=challenge.node,
                state=challenge.state,
                expires_ts=challenge.expires_ts,
            )
        )


def load_challenge(engine: Engine, value: str) -> Challenge | None:
    """The stored challenge `value`, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(challenges_t).where(challenges_t.c.challenge == value)).first()
    return Challenge(row.challenge, row.node, row.partner, row.expires_ts, row.state) if row else None


def consume_challenge(engine: Engine, challenge: Challenge) -> None:
    """Mark `challenge` used; AuthError if another request consumed it first."""
    new_state = transition(challenge.state, "consume")
    with writing(engine) as conn:
        done = conn.execute(
            challenges_t.update()
            .where(challenges_t.c.challenge == challenge.value, challenges_t.c.state == challenge.state)
            .values(state=new_state)
        ).rowcount
    if done != 1:
        transition("used", "consume")  # raises: someone else consumed it between read and write


def get_session(engine: Engine, partner: str) -> tuple[str, str, int] | None:
    """Our session token at `partner`: (token, the key id it is bound to, expiry), or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(sessions_t).where(sessions_t.c.partner == partner)).first()
    return (row.token, row.kid, row.expires_ts) if row else None


def save_session(engine: Engine, partner: str, token: str, kid: str, expires_ts: int) -> None:
    """Remember our session token at `partner`."""
    with writing(engine) as conn:
        conn.execute(sessions_t.delete().where(sessions_t.c.partner == partner))
        conn.execute(sessions_t.insert().values(partner=partner, token=token, kid=kid, expires_ts=expires_ts))


def drop_session(engine: Engine, partner: str) -> None:
    """Forget our session at `partner` (it was refused)."""
    with writing(engine) as conn:
        conn.execute(sessions_t.delete().where(sessions_t.c.partner == partner))


# --- catalogs -----------------------------------------------------------------------------------


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
        conn.execute(received_t.delete().where(received_t.c.partner == partner))
        conn.execute(
            received_t.insert().values(
                partner=partner,
                version=head.version,
                sha256=head.sha256,
                issued_ts=head.issued_ts,
                expires_ts=head.expires_ts,
                received_ts=now_ts,
                offer_count=len(catalog.offers),
                key_id=catalog.key_id,
                body=body,
            )
        )
        conn.execute(
            events_t.insert().values(
                partner=partner,
                at_ts=now_ts,
                kind="accepted",
                code="ok",
                message=f"version {head.version}, {len(catalog.offers)} offers",
            )
        )
        return True


def received_catalogs(engine: Engine, partner: str | None = None) -> list[dict[str, Any]]:
    """Stored partner catalogs (bodies included), optionally of one partner."""
    query = sa.select(received_t).order_by(received_t.c.partner)
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


# --- sync state, discovery, trades --------------------------------------------------------------


def sync_states(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per-partner sync state by partner name."""
    with engine.connect() as conn:
        return {row.partner: dict(row._mapping) for row in conn.execute(sa.select(sync_t))}


def put_sync_state(engine: Engine, partner: str, **values: Any) -> None:
    """Create or update one partner's sync state."""
    with writing(engine) as conn:
        if conn.execute(sa.select(sync_t.c.partner).where(sync_t.c.partner == partner)).first() is None:
            defaults = {"status": "never", "failures": 0, "next_attempt_ts": 0}
            conn.execute(sync_t.insert().values(partner=partner, **{**defaults, **values}))
        else:
            conn.execute(sync_t.update().where(sync_t.c.partner == partner).values(**values))


def upsert_discovered(engine: Engine, name: str, url: str, public_key: str, fp: str, now_ts: int) -> None:
    """Record (or refresh) a node seen by discovery; it stays an untrusted candidate."""
    with writing(engine) as conn:
        row = conn.execute(sa.select(discovered_t.c.name).where(discovered_t.c.name == name)).first()
        values = {"url": url, "public_key": public_key, "fingerprint": fp, "last_seen_ts": now_ts}
        if row is None:
            conn.execute(discovered_t.insert().values(name=name, first_seen_ts=now_ts, **values))
        else:
            conn.execute(discovered_t.update().where(discovered_t.c.name == name).values(**values))


def list_discovered(engine: Engine) -> list[dict[str, Any]]:
    """Discovered candidates, by name."""
    with engine.connect() as conn:
        return [
            dict(row._mapping) for row in conn.execute(sa.select(discovered_t).order_by(discovered_t.c.name))
        ]


def get_trade(engine: Engine, partner: str, trade_id: str) -> dict[str, Any] | None:
    """The stored answer to `partner`'s trade request `trade_id`, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(trades_t).where(trades_t.c.partner == partner, trades_t.c.trade_id == trade_id)
        ).first()
    return dict(row._mapping) if row else None


def put_trade(
    engine: Engine,
    partner: str,
    trade_id: str,
    request_sha256: str,
    status: int,
    response: bytes,
    now_ts: int,
) -> bool:
    """Store the answer to a trade request once; False if one was stored first."""
    with writing(engine) as conn:
        exists = conn.execute(
            sa.select(trades_t.c.trade_id).where(
                trades_t.c.partner == partner, trades_t.c.trade_id == trade_id
            )
        ).first()
        if exists is not None:
            return False
        conn.execute(
            trades_t.insert().values(
                partner=partner,
                trade_id=trade_id,
                request_sha256=request_sha256,
                status=status,
                response=response,
                created_ts=now_ts,
            )
        )
        return True
