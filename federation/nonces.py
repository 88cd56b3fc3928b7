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

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from federation.store.db import writing
from federation.tables import seen_nonces_t


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


def claim_nonce(engine: Engine, kid: str, nonce: str, until_ts: int, now_ts: int) -> bool:
    """Record (`kid`, `nonce`) as used until `until_ts`; False if it is already used and not expired."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(seen_nonces_t)
        .values(kid=kid, nonce=nonce, expires_ts=until_ts)
        .on_conflict_do_update(
            index_elements=[seen_nonces_t.c.kid, seen_nonces_t.c.nonce],
            set_={"expires_ts": until_ts},
            where=seen_nonces_t.c.expires_ts < now_ts,
        )
        .returning(seen_nonces_t.c.kid)
    )
    with writing(engine) as conn:
        # RETURNING, not rowcount: drivers need not report rowcount for INSERT ... ON CONFLICT.
        return conn.execute(stmt).first() is not None


def purge_expired(engine: Engine, now_ts: int) -> int:
    """Delete nonces that expired before `now_ts`; return how many."""
    with writing(engine) as conn:
        return int(conn.execute(seen_nonces_t.delete().where(seen_nonces_t.c.expires_ts < now_ts)).rowcount)


def count_seen(engine: Engine) -> int:
    """How many nonces are stored (expired ones included until purged)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(seen_nonces_t)).scalar_one())
