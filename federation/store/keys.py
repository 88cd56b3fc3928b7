"""Partners' keys as this node knows them: the deny-list and the keys learned from key documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbprep import Prepared
from federation.keydoc import KeyRecord, merge_records
from federation.partners import Partner
from federation.store.db import writing
from federation.store.partners import partner_from_row
from federation.store.sessions import StoredSession, session_in
from federation.tables import denied_t, partners_t, peer_keys_t, sessions_t


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
        return _learned(_PEER_KEYS.rows(conn, {"p_name": partner}))


def _learned(rows: list[dict[str, Any]]) -> tuple[dict[str, KeyRecord], int]:
    """The key records of `fed_peer_keys` rows, and the earliest document expiry among them (0 if none)."""
    records = {
        r["kid"]: KeyRecord(r["kid"], r["public_key"], r["status"], r["valid_from_ts"], r["retired_ts"])
        for r in rows
    }
    return records, min((r["document_expires_ts"] for r in rows), default=0)


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


@dataclass(frozen=True)
class PeerView:
    """What checking a peer's signatures needs, read in one go: the partner (None if not pinned),
    the keys learned from its key documents with the latest one's expiry, and the deny-list."""

    partner: Partner | None
    learned: dict[str, KeyRecord]
    document_expires_ts: int
    denied: frozenset[str]


# The reads of every signed request, rendered once and run on the driver's cursor (dbprep): through
# SQLAlchemy's execution they took about three times as long.
_PARTNER = Prepared(sa.select(partners_t).where(partners_t.c.name == sa.bindparam("p_name")))
_PEER_KEYS = Prepared(sa.select(peer_keys_t).where(peer_keys_t.c.partner == sa.bindparam("p_name")))
_DENIED = Prepared(sa.select(denied_t.c.kid))


def peer_view(engine: Engine, name: str) -> PeerView:
    """The partner called `name`, its learned keys and the deny-list, in one connection."""
    with engine.connect() as conn:
        return _peer_view(conn, name)


def _peer_view(conn: Connection, name: str) -> PeerView:
    params = {"p_name": name}
    row = _PARTNER.first(conn, params)
    records, expires = _learned(_PEER_KEYS.rows(conn, params))
    denied = frozenset(r["kid"] for r in _DENIED.rows(conn))
    return PeerView(partner_from_row(row) if row is not None else None, records, expires, denied)


def call_view(engine: Engine, name: str) -> tuple[PeerView, StoredSession | None]:
    """What calling partner `name` and checking its signed answer read, in one connection: its
    `peer_view` and our session at it (as `get_session`)."""
    with engine.connect() as conn:
        return call_view_in(conn, name)


def call_view_in(conn: Connection, name: str) -> tuple[PeerView, StoredSession | None]:
    """`call_view` on a connection the caller holds (read with other things in one trip)."""
    return _peer_view(conn, name), session_in(conn, name)
