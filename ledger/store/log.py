"""The tamper-evident log over the stored transfers: leaf hashes, signed checkpoints, proofs.

Leaf hashes are recomputed from the immutable rows rather than stored, which keeps hashing off
the write path. A checkpoint stores its compact range (the frontier of [0, size)), so the next one
hashes only the transfers added since, and the subtree hashes completed since (`ledger.store.tree`),
so a proof reads O(log n) of those and at most one tile of rows, not the whole log. Two replicas racing to write the same checkpoint size are
harmless: the size is the primary key and the loser reads the winner's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.engine import Connection, Engine

from ledger.bundle import b64
from ledger.checkpoint import Checkpoint, sign_checkpoint, strict_b64decode
from ledger.errors import LedgerError, NotFoundError
from ledger.merkle import (
    Frontier,
    consistency_path,
    consistency_proof,
    inclusion_path,
    subtree_root,
    verify_consistency,
)
from ledger.store.db import now_ms, write_transaction
from ledger.store.reads import read_head
from ledger.store.schema import checkpoints
from ledger.store.tree import (
    TILE,
    TreeHashes,
    insert_nodes,
    leaf_stream,
    new_nodes,
    stored_extent,
    stored_node_problems,
)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as stored: the parsed checkpoint, its signed note, and its frontier."""

    checkpoint: Checkpoint
    note: str
    frontier: tuple[bytes, ...]

    @property
    def size(self) -> int:
        """The tree size it commits to."""
        return self.checkpoint.size


def _from_row(row: sa.Row[tuple[int, bytes, int, str, str]]) -> StoredCheckpoint:
    m = row._mapping
    note = str(m["note"])
    origin = note.split("\n", 1)[0]
    frontier = tuple(strict_b64decode(h, "frontier hash") for h in json.loads(m["frontier"]))
    return StoredCheckpoint(
        Checkpoint(origin, int(m["size"]), bytes(m["root"]), int(m["time_ms"])), note, frontier
    )


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    """The checkpoint with the largest size, or None."""
    row = conn.execute(sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
    return None if row is None else _from_row(row)


def list_checkpoints(conn: Connection) -> list[StoredCheckpoint]:
    """Every checkpoint, smallest size first."""
    return [_from_row(row) for row in conn.execute(sa.select(checkpoints).order_by(checkpoints.c.size))]


def leaf_hashes(conn: Connection, begin: int, end: int) -> list[bytes]:
    """The Merkle leaf hashes of transfers begin ≤ seq < end, recomputed from the rows."""
    return list(leaf_stream(conn, begin, end))


def checkpoint_due(
    last_size: int | None, last_time_ms: int | None, size: int, now: int, every_transfers: int, every_s: float
) -> bool:
    """Whether a new checkpoint is due: new transfers, and N of them or T seconds since the last one."""
    if last_size is None or last_time_ms is None:
        return size > 0
    if size <= last_size:
        return False
    return size - last_size >= every_transfers or now - last_time_ms >= every_s * 1000


def make_checkpoint(
    engine: Engine, key: SigningKey, origin: str, *, now: int | None = None, force: bool = False
) -> StoredCheckpoint | None:
    """Sign a checkpoint at the log's current size, unless one exists there (then None, or it if `force`)."""
    with engine.connect() as conn, conn.begin():
        last = latest_checkpoint(conn)
        size = read_head(conn).size
        if last is not None and last.size >= size:
            return last if force else None
        if last is None and size == 0 and not force:
            return None
        frontier = Frontier() if last is None else Frontier(last.size, last.frontier)
        extent = min(stored_extent(conn), size - size % TILE)
        start = min(frontier.size, extent)

        def leaves() -> Iterator[bytes]:
            # One pass over the rows feeds both the frontier (from its size) and the new tiles.
            for seq, leaf in enumerate(leaf_stream(conn, start, size), start=start):
                if seq >= frontier.size:
                    frontier.append(leaf)
                if seq >= extent:
                    yield leaf

        nodes = new_nodes(conn, leaves(), extent, size)
    signed_ms = now_ms() if now is None else now
    checkpoint = Checkpoint(origin, size, frontier.root(), signed_ms)
    note = sign_checkpoint(checkpoint, key)
    stored = StoredCheckpoint(checkpoint, note, tuple(frontier.hashes))
    try:
        with write_transaction(engine) as conn:
            insert_nodes(conn, nodes)
            conn.execute(
                sa.insert(checkpoints).values(
                    size=size,
                    root=checkpoint.root,
                    time_ms=signed_ms,
                    note=note,
                    frontier=json.dumps([b64(h) for h in frontier.hashes]),
                )
            )
    except sa.exc.IntegrityError:
        with engine.connect() as conn:
            row = conn.execute(sa.select(checkpoints).where(checkpoints.c.size == size)).one()
        return _from_row(row)
    return stored


def checkpoint_if_due(
    engine: Engine,
    key: SigningKey,
    origin: str,
    *,
    every_transfers: int,
    every_s: float,
    now: int | None = None,
) -> StoredCheckpoint | None:
    """The scheduled job: sign a checkpoint when N transfers or T seconds have passed; else None."""
    current = now_ms() if now is None else now
    with engine.connect() as conn:
        last = latest_checkpoint(conn)
        size = read_head(conn).size
    last_size = None if last is None else last.size
    last_time = None if last is None else last.checkpoint.time_ms
    if not checkpoint_due(last_size, last_time, size, current, every_transfers, every_s):
        return None
    return make_checkpoint(engine, key, origin, now=current)


def tree_hashes(conn: Connection, size: int) -> TreeHashes:
    """Subtree hashes of the first `size` transfers; NotFoundError if the log is shorter."""
    head = read_head(conn).size
    if size > head:
        raise NotFoundError(f"the log has {head} transfers, not {size}")
    return TreeHashes(conn, size)


def prove_inclusion(engine: Engine, seq: int, size: int) -> list[bytes]:
    """The inclusion proof of transfer `seq` in the tree of `size` transfers."""
    with engine.connect() as conn:
        return inclusion_path(tree_hashes(conn, size), seq, size)


def prove_consistency(engine: Engine, old_size: int, new_size: int) -> list[bytes]:
    """The consistency proof from the tree of `old_size` transfers to that of `new_size`."""
    with engine.connect() as conn:
        return consistency_path(tree_hashes(conn, new_size), old_size, new_size)


def audit_log(engine: Engine) -> list[str]:
    """Recompute every checkpoint's root and every stored subtree hash from the rows, and check
    consecutive checkpoints are consistent.

    Returns one line per problem (empty when the log, its checkpoints and tree nodes agree)."""
    with engine.connect() as conn:
        stored = list_checkpoints(conn)
        leaves = leaf_hashes(conn, 0, read_head(conn).size)
        problems = stored_node_problems(conn, leaves)
    previous: StoredCheckpoint | None = None
    for item in stored:
        if item.size > len(leaves):
            problems.append(f"checkpoint {item.size}: larger than the log ({len(leaves)})")
            continue
        if subtree_root(leaves, 0, item.size) != item.checkpoint.root:
            problems.append(f"checkpoint {item.size}: root differs from the transfers' tree hash")
        if previous is not None and previous.size > 0:
            try:
                proof: Sequence[bytes] = consistency_proof(leaves, previous.size, item.size)
                verify_consistency(
                    previous.size, item.size, proof, previous.checkpoint.root, item.checkpoint.root
                )
            except LedgerError as exc:
                problems.append(f"checkpoints {previous.size} → {item.size}: {exc}")
        previous = item
    return problems


def current_checkpoint(engine: Engine) -> StoredCheckpoint | None:
    """The latest stored checkpoint, or None before the first."""
    with engine.connect() as conn:
        return latest_checkpoint(conn)
