"""Stored subtree hashes: written with checkpoints, proofs from them equal proofs from every leaf
while reading a tile of rows at most, anything missing is recomputed, and a bad node is caught."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from ledger import audit_log, make_checkpoint, prove_consistency, prove_inclusion, submit
from ledger.merkle import (
    consistency_proof,
    inclusion_path,
    inclusion_proof,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)
from ledger.store.log import leaf_hashes, tree_hashes
from ledger.store.reads import read_head
from ledger.store.schema import tree_nodes
from ledger.store.tree import TILE, TILE_LEVEL, insert_nodes, new_nodes
from tests.ledger.support import open_accounts, single

ORIGIN = "n.cpnode/ledger"


def _grow(engine: Engine, start: int, count: int) -> None:
    """Append `count` single-phase transfers (ids from `start`), in batches of 500."""
    for low in range(start, start + count, 500):
        high = min(start + count, low + 500)
        submit(
            engine, [single(f"t{i}", "bank", "pool", 1 + i % 7) for i in range(low, high)], now=1_000 + low
        )


def _stored(engine: Engine) -> dict[tuple[int, int], bytes]:
    with engine.connect() as conn:
        return {(r.level, r.idx): bytes(r.hash) for r in conn.execute(sa.select(tree_nodes))}


def _leaves(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        return leaf_hashes(conn, 0, read_head(conn).size)


@pytest.fixture(name="books")
def fixture_books(engine: Engine, key: SigningKey) -> Engine:
    """1,317 transfers (five full tiles and a partial one), checkpointed at 300, 700 and 1,317."""
    open_accounts(engine, "bank", "pool")
    _grow(engine, 0, 300)
    make_checkpoint(engine, key, ORIGIN, now=10)
    _grow(engine, 300, 400)
    make_checkpoint(engine, key, ORIGIN, now=20)
    _grow(engine, 700, 617)
    make_checkpoint(engine, key, ORIGIN, now=30)
    return engine


@pytest.mark.slow  # 1,317 transfers
def test_checkpoints_store_every_full_subtree_of_a_tile_or_more(books: Engine) -> None:
    """After checkpoints at sizes that cut tiles in the middle, exactly the perfect subtrees of ≥ 256
    leaves inside the log are stored, each with the hash of its leaves."""
    leaves = _leaves(books)
    assert len(leaves) == 1317
    stored = _stored(books)
    assert sorted(stored) == [(8, 0), (8, 1), (8, 2), (8, 3), (8, 4), (9, 0), (9, 1), (10, 0)]
    for (level, idx), digest in stored.items():
        assert digest == subtree_root(leaves, idx << level, (idx + 1) << level)
    assert audit_log(books) == []


@pytest.mark.slow  # 1,317 transfers
def test_proofs_from_stored_nodes_equal_proofs_from_every_leaf(books: Engine, key: SigningKey) -> None:
    """Inclusion and consistency proofs match the leaf-by-leaf ones for sizes at, between and past
    checkpoints (past the last one, missing nodes are recomputed from the rows)."""
    _grow(books, 1317, 500)  # 1,817 transfers, the last 500 not yet checkpointed
    leaves = _leaves(books)
    for size in (1, 255, 256, 257, 300, 512, 700, 1024, 1317, 1500, 1817):
        for seq in {0, size // 3, size // 2, size - 1}:
            assert prove_inclusion(books, seq, size) == inclusion_proof(leaves, seq, size), (seq, size)
        for old in {1, size // 2 or 1, 256, 257, 700, size}:
            if old <= size:
                assert prove_consistency(books, old, size) == consistency_proof(leaves, old, size)
    checkpoint = make_checkpoint(books, key, ORIGIN, now=40)
    assert checkpoint is not None
    assert checkpoint.size == 1817
    assert checkpoint.checkpoint.root == subtree_root(leaves)
    assert (11, 0) not in _stored(books)  # 2,048 leaves do not exist yet
    assert (9, 2) in _stored(books)
    assert audit_log(books) == []


def test_a_proof_reads_a_tile_of_rows_not_the_log(books: Engine) -> None:
    """With the nodes stored, a proof reads at most the leaf's tile and the partial tile at the edge."""
    with books.connect() as conn:
        tree = tree_hashes(conn, 1317)
        proof = inclusion_path(tree, 600, 1317)
        assert tree.rows_read <= 2 * TILE
    with books.connect() as conn:
        tree = tree_hashes(conn, 1024)
        inclusion_path(tree, 600, 1024)
        assert tree.rows_read == TILE
    verify_inclusion(600, 1317, _leaves(books)[600], proof, subtree_root(_leaves(books)))


def test_nodes_fill_in_on_the_first_checkpoint_after_upgrade(engine: Engine, key: SigningKey) -> None:
    """A log written before nodes were stored (no checkpoint yet) proves correctly from the rows, and
    its first checkpoint stores every node in one pass."""
    open_accounts(engine, "bank", "pool")
    _grow(engine, 0, 800)
    assert _stored(engine) == {}
    leaves = _leaves(engine)
    assert prove_inclusion(engine, 513, 800) == inclusion_proof(leaves, 513, 800)
    make_checkpoint(engine, key, ORIGIN, now=10)
    assert sorted(_stored(engine)) == [(8, 0), (8, 1), (8, 2), (9, 0)]
    assert prove_consistency(engine, 300, 800) == consistency_proof(leaves, 300, 800)


def test_a_wrong_stored_node_is_caught(books: Engine, db_url: str) -> None:
    """Nodes are append-only like the log; one stored wrongly anyway (here past the append-only guard,
    on SQLite) is named by the audit, and a proof built from it fails against the signed checkpoint."""
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), books.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_tree_nodes SET hash = hash WHERE level = 8"))
    with books.begin() as conn:  # a stray node beyond the log is reported too
        insert_nodes(conn, [(8, 99, b"\x00" * 32)])
    assert audit_log(books) == ["tree node (8, 99): beyond the log's 1317 transfers"]
    if not db_url.startswith("sqlite"):
        return
    with books.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER ledger_tree_nodes_no_update"))
        conn.execute(sa.text("UPDATE ledger_tree_nodes SET hash = zeroblob(32) WHERE level = 9 AND idx = 0"))
    assert "tree node (9, 0): differs from the transfers' subtree hash" in audit_log(books)
    leaves = _leaves(books)
    with pytest.raises(ValueError, match="does not reach"):
        verify_inclusion(1000, 1317, leaves[1000], prove_inclusion(books, 1000, 1317), subtree_root(leaves))
    with pytest.raises(ValueError, match="does not reach"):
        verify_consistency(
            600, 1317, prove_consistency(books, 600, 1317), subtree_root(leaves, 0, 600), subtree_root(leaves)
        )


def test_new_nodes_continue_from_what_is_stored(books: Engine) -> None:
    """Given only the leaves past the stored tiles, the new nodes use the stored left siblings; storing
    a node another replica stored first is harmless."""
    leaves = _leaves(books)
    more = [bytes([i % 256]) * 32 for i in range(1317, 2048)]
    everything = leaves + more
    first_tile = _stored(books)[(8, 0)]
    with books.begin() as conn:
        nodes = new_nodes(conn, iter(everything[5 * TILE :]), 5 * TILE, 2048)
        assert {(level, idx) for level, idx, _ in nodes} == {
            (8, 5),
            (8, 6),
            (8, 7),
            (9, 2),
            (9, 3),
            (10, 1),
            (11, 0),
        }
        for level, idx, digest in nodes:
            assert digest == subtree_root(everything, idx << level, (idx + 1) << level)
        insert_nodes(conn, [(TILE_LEVEL, 0, first_tile)])
        with pytest.raises(ValueError, match="multiple of 256"):
            new_nodes(conn, iter(()), 100, 2048)
