"""Login: the challenges this node issues to partners, and its own sessions at partners."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from dbprep import Prepared
from federation.login import Challenge, transition
from federation.store.db import writing
from federation.tables import challenges_t, sessions_t


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


# Read before every request to a partner: rendered once, run on the driver's cursor (dbprep).
_SESSION = Prepared(sa.select(sessions_t).where(sessions_t.c.partner == sa.bindparam("p_partner")))


# Our session at a partner as stored: (token, the key id it is bound to, expiry).
StoredSession = tuple[str, str, int]


def get_session(engine: Engine, partner: str) -> StoredSession | None:
    """Our session token at `partner`: (token, the key id it is bound to, expiry), or None."""
    with engine.connect() as conn:
        return session_in(conn, partner)


def session_in(conn: Connection, partner: str) -> StoredSession | None:
    """`get_session` on a connection the caller holds (read with other things in one trip)."""
    row = _SESSION.first(conn, {"p_partner": partner})
    return (row["token"], row["kid"], row["expires_ts"]) if row else None


def save_session(engine: Engine, partner: str, token: str, kid: str, expires_ts: int) -> None:
    """Remember our session token at `partner`, replacing the one stored. One statement (INSERT …
    ON CONFLICT DO UPDATE): replicas over one database logging in at the same partner at once each
    store theirs, the last one kept, where a delete and an insert let the later insert fail."""
    values = {"partner": partner, "token": token, "kid": kid, "expires_ts": expires_ts}
    with writing(engine) as conn:
        conn.execute(_upsert(conn.dialect.name).values(**values))


def _upsert(dialect: str) -> Any:
    """The session upsert of `dialect` (PostgreSQL's or SQLite's INSERT … ON CONFLICT)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # loaded only where a PostgreSQL URL is used

        insert: Any = postgresql.insert
    else:
        insert = sqlite.insert
    stmt = insert(sessions_t)
    return stmt.on_conflict_do_update(
        index_elements=[sessions_t.c.partner],
        set_={"token": stmt.excluded.token, "kid": stmt.excluded.kid, "expires_ts": stmt.excluded.expires_ts},
    )


def drop_session(engine: Engine, partner: str) -> None:
    """Forget our session at `partner` (it was refused)."""
    with writing(engine) as conn:
        conn.execute(sessions_t.delete().where(sessions_t.c.partner == partner))
