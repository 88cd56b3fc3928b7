"""What this node tracks about peers besides keys and catalogs: each partner's sync state, nodes
seen by discovery, and the stored answers to partners' trade requests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from federation.store.db import writing
from federation.tables import discovered_t, sync_t, trades_t


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
