"""The ledger's scheduled work as plain functions the node registers with its scheduler.

Each takes the engine and plain values (the node's signing key, its origin string) and returns what
it did, so the node can log it and tests can call it with a fake clock.
"""

from __future__ import annotations

from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from ledger.records import Transfer
from ledger.store.log import StoredCheckpoint, checkpoint_if_due
from ledger.store.writer import expire_due


def checkpoint_job(
    engine: Engine,
    key: SigningKey,
    origin: str,
    *,
    every_transfers: int,
    every_s: float,
    now: int | None = None,
) -> StoredCheckpoint | None:
    """Sign a checkpoint when `every_transfers` transfers or `every_s` seconds have passed since the last."""
    return checkpoint_if_due(engine, key, origin, every_transfers=every_transfers, every_s=every_s, now=now)


def sweep_job(engine: Engine, *, now: int | None = None, limit: int = 1_000) -> list[Transfer]:
    """Expire holds whose deadline has come (up to `limit` per run); return the expiry transfers."""
    return expire_due(engine, now=now, limit=limit)


def origin_for(node_name: str) -> str:
    """The checkpoint origin (and signed-note key name) of a node's ledger."""
    return f"{node_name}.cpnode/ledger"
