"""Replay protection that holds across replicas sharing one database.

A signed request's (key id, nonce) is accepted once while its signature is valid, whichever
replica it reaches. The database decides: `claim_nonce` inserts the pair into `fed_seen_nonces`
(migration federation_0002), whose primary key lets exactly one insert win; a pair already there
and not expired is a replay (401 `replayed`). A row past its expiry may be claimed again: the
signature that carried it had expired first, so only the key's owner can reuse the nonce, under a
new signature.

`RecentNonces` is a bounded in-process front cache of pairs this process has seen. It only ever
answers "seen here, refuse" (saving the database round trip on replays to the same replica); it
never admits a request — every request it does not refuse still goes to the database. Dropping
entries when full therefore costs a round trip, never safety.

Expired rows are deleted by `purge_expired`, which the node runs as a scheduled job (one replica
at a time). Rows left behind never admit a replay; they only take space until the next purge.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ClauseElement

from dbprep import Prepared
from federation.store.db import writing
from federation.tables import seen_nonces_t


@dataclass(frozen=True)
class PendingNonce:
    """A signed request's nonce not yet claimed: the route claims it with what the request changes."""

    kid: str
    nonce: str
    until_ts: int
    now_ts: int


class RecentNonces:
    """Nonces this process has seen, until they expire; bounded, and only ever a reason to refuse."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._until: dict[tuple[str, str], int] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, kid: str, nonce: str, now_ts: int) -> bool:
        """Whether this process saw (`kid`, `nonce`) and it has not expired yet."""
        until = self._until.get((kid, nonce))
        return until is not None and until >= now_ts

    def add(self, kid: str, nonce: str, until_ts: int, now_ts: int) -> None:
        """Remember (`kid`, `nonce`) until `until_ts`, evicting expired then oldest entries when full."""
        if len(self._until) >= self._max_entries:
            self._until = {key: until for key, until in self._until.items() if until >= now_ts}
            if len(self._until) >= self._max_entries:
                # Oldest first (insertion order): forgetting only means asking the database again.
                keep = list(self._until.items())[len(self._until) // 2 :]
                self._until = dict(keep)
        self._until[(kid, nonce)] = until_ts


def _claim_statement(insert: Any) -> ClauseElement:
    """INSERT ... ON CONFLICT (expired) DO UPDATE ... RETURNING, built once per dialect with bind
    parameters (`p_kid`, `p_nonce`, `p_until`, `p_now`) rendered once (dbprep)."""
    stmt: ClauseElement = (
        insert(seen_nonces_t)
        .values(kid=sa.bindparam("p_kid"), nonce=sa.bindparam("p_nonce"), expires_ts=sa.bindparam("p_until"))
        .on_conflict_do_update(
            index_elements=[seen_nonces_t.c.kid, seen_nonces_t.c.nonce],
            set_={"expires_ts": sa.bindparam("p_until")},
            where=seen_nonces_t.c.expires_ts < sa.bindparam("p_now"),
        )
        .returning(seen_nonces_t.c.kid)
    )
    return stmt


@functools.cache
def _claim(dialect: str) -> Prepared:
    """The claim statement of `dialect` ("postgresql" or "sqlite"), built on first use and run on
    the driver's cursor (dbprep): every signed write request claims its nonce."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # loaded only where a PostgreSQL URL is used

        return Prepared(_claim_statement(postgresql.insert))
    return Prepared(_claim_statement(sqlite.insert))


def claim_nonce(engine: Engine, kid: str, nonce: str, until_ts: int, now_ts: int) -> bool:
    """Record (`kid`, `nonce`) as used until `until_ts`; False if it is already used and not expired."""
    with writing(engine) as conn:
        return claim_nonce_in(conn, kid, nonce, until_ts, now_ts)


def claim_nonce_in(conn: sa.Connection, kid: str, nonce: str, until_ts: int, now_ts: int) -> bool:
    """`claim_nonce` inside the caller's write transaction, so a request's nonce and what the
    request changes are committed together (one commit instead of two)."""
    stmt = _claim("postgresql" if conn.dialect.name == "postgresql" else "sqlite")
    params = {"p_kid": kid, "p_nonce": nonce, "p_until": until_ts, "p_now": now_ts}
    # RETURNING, not rowcount: drivers need not report rowcount for INSERT ... ON CONFLICT.
    return stmt.first(conn, params) is not None


def purge_expired(engine: Engine, now_ts: int) -> int:
    """Delete nonces that expired before `now_ts`; return how many."""
    with writing(engine) as conn:
        return int(conn.execute(seen_nonces_t.delete().where(seen_nonces_t.c.expires_ts < now_ts)).rowcount)


def count_seen(engine: Engine) -> int:
    """How many nonces are stored (expired ones included until purged)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(seen_nonces_t)).scalar_one())
