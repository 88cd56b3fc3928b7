"""Consumers' API tokens in the database (table `trading_consumer_tokens`, migration node_0003).

The token format, its parsing and hashing are pure and live in node.http.auth; this module only
stores and reads rows. Every check reads the row, so a token revoked through one replica is refused
by every replica at its next request (nothing is cached).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.accounts.tables import accounts_t
from node.db import write_transaction
from node.http.auth import new_consumer_token, new_token_id, parse_consumer_token, secret_matches
from node.trading.tables import consumer_tokens_t

_ID_ATTEMPTS = 5
# Compared against when the token id is unknown, so that case costs what a wrong secret costs.
_NO_DIGEST = "0" * 64


@dataclass(frozen=True)
class ConsumerToken:
    """A stored token as the API shows it: never its secret nor the secret's digest."""

    token_id: str
    consumer: str
    created_ts: int  # UTC ms
    revoked_ts: int | None  # UTC ms

    def view(self) -> dict[str, Any]:
        """What the API shows of a token."""
        return {
            "id": self.token_id,
            "consumer": self.consumer,
            "created_ts": self.created_ts,
            "revoked_ts": self.revoked_ts,
        }


def now_ms() -> int:
    """The current UTC time in milliseconds."""
    return time.time_ns() // 1_000_000


def _token(row: Any) -> ConsumerToken:
    return ConsumerToken(row.token_id, row.consumer, row.created_ts, row.revoked_ts)


_COLUMNS = (
    consumer_tokens_t.c.token_id,
    consumer_tokens_t.c.consumer,
    consumer_tokens_t.c.created_ts,
    consumer_tokens_t.c.revoked_ts,
)


def issue(engine: Engine, consumer: str, created_ts: int) -> tuple[str, ConsumerToken]:
    """Store a new token for `consumer`; (the token, to be shown once, and its row)."""
    for _ in range(_ID_ATTEMPTS):
        token_id = new_token_id()
        token, digest = new_consumer_token(token_id)
        try:
            with write_transaction(engine) as conn:
                conn.execute(
                    sa.insert(consumer_tokens_t).values(
                        token_id=token_id,
                        consumer=consumer,
                        secret_sha256=digest,
                        created_ts=created_ts,
                        revoked_ts=None,
                    )
                )
        except sa.exc.IntegrityError:  # the id is taken (about 1 in 2^47 per token issued)
            continue
        return token, ConsumerToken(token_id, consumer, created_ts, None)
    raise RuntimeError(f"no free token id after {_ID_ATTEMPTS} attempts")


def list_tokens(engine: Engine, consumer: str) -> list[ConsumerToken]:
    """A consumer's tokens, oldest first, revoked ones included."""
    query = (
        sa.select(*_COLUMNS)
        .where(consumer_tokens_t.c.consumer == consumer)
        .order_by(consumer_tokens_t.c.created_ts, consumer_tokens_t.c.token_id)
    )
    with engine.connect() as conn:
        return [_token(row) for row in conn.execute(query)]


def revoke(engine: Engine, consumer: str, token_id: str, revoked_ts: int) -> ConsumerToken | None:
    """Revoke a consumer's token (a token revoked already keeps its first revocation time); None
    when `consumer` has no token `token_id`."""
    mine = (consumer_tokens_t.c.token_id == token_id, consumer_tokens_t.c.consumer == consumer)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.update(consumer_tokens_t)
            .where(*mine, consumer_tokens_t.c.revoked_ts.is_(None))
            .values(revoked_ts=revoked_ts)
        )
        row = conn.execute(sa.select(*_COLUMNS).where(*mine)).first()
    return None if row is None else _token(row)


def consumer_of(engine: Engine, token: str) -> str | None:
    """The consumer a bearer token authenticates: None when it is malformed, unknown, revoked or its
    secret is wrong."""
    found = consumer_and_status(engine, token)
    return None if found is None else found[0]


def consumer_and_status(engine: Engine, token: str) -> tuple[str, str] | None:
    """(consumer, its account status) for a bearer token, read in one query (the status is `active`
    for a consumer without a lifecycle row, node.accounts); None as for `consumer_of`."""
    parsed = parse_consumer_token(token)
    if parsed is None:
        return None
    token_id, secret = parsed
    t = consumer_tokens_t
    joined = t.outerjoin(
        accounts_t, sa.and_(accounts_t.c.kind == "consumer", accounts_t.c.id == t.c.consumer)
    )
    query = (
        sa.select(t.c.consumer, t.c.secret_sha256, t.c.revoked_ts, accounts_t.c.status)
        .select_from(joined)
        .where(t.c.token_id == token_id)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    matches = secret_matches(secret, _NO_DIGEST if row is None else row.secret_sha256)
    if row is None or not matches or row.revoked_ts is not None:
        return None
    return str(row.consumer), str(row.status or "active")
