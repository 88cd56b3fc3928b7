"""Stored subtree hashes of the log's Merkle tree, so proofs read O(log n) rows instead of every leaf.

Node (level, idx) is the hash of the perfect subtree over seq [idx·2^level, (idx+1)·2^level). Levels
from TILE_LEVEL up are stored (`ledger_tree_nodes`), written with each checkpoint; below that a
hash is recomputed from at most one tile of 2^TILE_LEVEL transfer rows. The rows are derived data:
a missing one is recomputed from its children (so a proof never depends on them being present),
a wrong one makes a proof fail against the signed checkpoint, and `cpnode ledger audit` compares
every stored node with the transfers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from ledger.merkle import EMPTY_ROOT, leaf_hash, node_hash, split_size, subtree_root
from ledger.store.reads import iter_transfers
from ledger.store.schema import tree_nodes

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql

TILE_LEVEL = 8
TILE = 1 << TILE_LEVEL

Node = tuple[int, int, bytes]  # (level, idx, hash)


class TreeHashes:
    """RFC 9162 subtree hashes of the first `size` transfers, from stored nodes and tile rows.

    Call it as `tree(start, end)`: it is a `ledger.merkle.SubtreeHasher`. Reads are cached for the
    life of the object (one proof or one export)."""

    def __init__(self, conn: Connection, size: int) -> None:
        self.conn = conn
        self.size = size
        self._tiles: dict[int, list[bytes]] = {}
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.rows_read = 0

    def __call__(self, start: int, end: int) -> bytes:
        """The tree hash of seq [start, end), end ≤ size."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"[{start}, {end}) is outside a tree of {self.size}")
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return self.node(level, start >> level)
        k = split_size(n)
        return node_hash(self(start, start + k), self(start + k, end))

    def node(self, level: int, idx: int) -> bytes:
        """The hash of perfect subtree (level, idx), which must lie inside the tree."""
        if level < TILE_LEVEL:
            first = idx << level
            tile = self._tile(first >> TILE_LEVEL)
            offset = first & (TILE - 1)
            return subtree_root(tile, offset, offset + (1 << level))
        key = (level, idx)
        cached = self._nodes.get(key)
        if cached is None:
            cached = self.conn.execute(
                sa.select(tree_nodes.c.hash).where(tree_nodes.c.level == level, tree_nodes.c.idx == idx)
            ).scalar()
            if cached is None:
                cached = node_hash(self.node(level - 1, 2 * idx), self.node(level - 1, 2 * idx + 1))
            else:
                cached = bytes(cached)
            self._nodes[key] = cached
        return cached

    def _tile(self, tile: int) -> list[bytes]:
        leaves = self._tiles.get(tile)
        if leaves is None:
            begin = tile << TILE_LEVEL
            end = min(begin + TILE, self.size)
            leaves = list(leaf_stream(self.conn, begin, end))
            self.rows_read += len(leaves)
            self._tiles[tile] = leaves
        return leaves


def stored_extent(conn: Connection) -> int:
    """How many leading transfers the stored tiles cover (a multiple of TILE)."""
    last = conn.execute(
        sa.select(sa.func.max(tree_nodes.c.idx)).where(tree_nodes.c.level == TILE_LEVEL)
    ).scalar()
    return 0 if last is None else (int(last) + 1) * TILE


def new_nodes(conn: Connection, leaves: Iterable[bytes], begin: int, size: int) -> list[Node]:
    """The nodes to store once the log has `size` transfers, given the leaf hashes from `begin`
    (= stored_extent) on: every perfect subtree of level ≥ TILE_LEVEL inside [0, size) not yet stored."""
    if begin % TILE:
        raise ValueError(f"stored tiles end at a multiple of {TILE}, not {begin}")
    nodes: list[Node] = []
    level_nodes: dict[int, bytes] = {}
    chunk: list[bytes] = []
    full_end = size - size % TILE
    for seq, leaf in enumerate(leaves, start=begin):
        if seq >= full_end:
            continue  # the partial last tile; the caller may still be reading the stream for itself
        chunk.append(leaf)
        if len(chunk) == TILE:
            idx = seq >> TILE_LEVEL
            digest = subtree_root(chunk)
            chunk = []
            nodes.append((TILE_LEVEL, idx, digest))
            level_nodes[idx] = digest
    level, below = TILE_LEVEL, level_nodes
    while below:
        level += 1
        above: dict[int, bytes] = {}
        for idx in range((begin >> level), size >> level):
            left, right = below.get(2 * idx), below.get(2 * idx + 1)
            if right is None:
                continue
            if left is None:  # finished before this round: stored already
                left = _stored(conn, level - 1, 2 * idx)
            above[idx] = node_hash(left, right)
            nodes.append((level, idx, above[idx]))
        below = above
    return nodes


def _stored(conn: Connection, level: int, idx: int) -> bytes:
    value = conn.execute(
        sa.select(tree_nodes.c.hash).where(tree_nodes.c.level == level, tree_nodes.c.idx == idx)
    ).scalar()
    if value is None:
        raise LookupError(f"tree node ({level}, {idx}) should be stored and is not")
    return bytes(value)


def insert_nodes(conn: Connection, nodes: list[Node]) -> None:
    """Store nodes; one another replica stored first is left as it is (the same hash, by construction)."""
    if not nodes:
        return
    rows = [{"level": level, "idx": idx, "hash": digest} for level, idx, digest in nodes]
    insert: Callable[[sa.Table], postgresql.Insert | sqlite.Insert] = sqlite.insert
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # loaded only where a PostgreSQL URL is used

        insert = postgresql.insert
    conn.execute(insert(tree_nodes).on_conflict_do_nothing(), rows)


def leaf_stream(conn: Connection, begin: int, end: int) -> Iterator[bytes]:
    """Leaf hashes of seq [begin, end), recomputed from the rows as they are read."""
    for transfer in iter_transfers(conn, begin, end):
        yield leaf_hash(transfer.leaf_data())


def stored_node_problems(conn: Connection, leaves: list[bytes]) -> list[str]:
    """Stored nodes that differ from the tree of `leaves` (all of the log's leaf hashes), or lie outside it."""
    expected = {(level, idx): digest for level, idx, digest in new_nodes(conn, leaves, 0, len(leaves))}
    problems = []
    for level, idx, digest in conn.execute(
        sa.select(tree_nodes).order_by(tree_nodes.c.level, tree_nodes.c.idx)
    ):
        want = expected.get((level, idx))
        if want is None:
            problems.append(f"tree node ({level}, {idx}): beyond the log's {len(leaves)} transfers")
        elif want != bytes(digest):
            problems.append(f"tree node ({level}, {idx}): differs from the transfers' subtree hash")
    return problems
