"""RFC 9162 Merkle tree: the transparency-dev reference vectors, and our own proofs against a naive tree."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle
from ledger.errors import ProofError

# transparency-dev/merkle testdata (Apache-2.0, see vectors/rfc9162/LICENSE and README.md).
VECTORS = Path(__file__).resolve().parent / "vectors" / "rfc9162" / "testdata"
FILES = sorted(VECTORS.rglob("*.json"))


def _b64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _check(kind: str, case: dict[str, Any]) -> None:
    proof = [_b64(h) for h in case.get("proof") or []]
    if kind == "inclusion":
        merkle.verify_inclusion(
            case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"])
        )
    elif kind == "consistency":
        merkle.verify_consistency(
            case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"])
        )
    elif kind == "subtreeinclusion":
        merkle.verify_subtree_inclusion(
            case["leafIdx"], case["start"], case["end"], _b64(case["leafHash"]), proof, _b64(case["root"])
        )
    else:
        merkle.verify_subtree_consistency(
            case["start"], case["end"], case["size"], proof, _b64(case["root1"]), _b64(case["root2"])
        )


def test_vectors_are_present() -> None:
    """The reference vectors are where the tests expect them, all four proof kinds included."""
    kinds = {path.relative_to(VECTORS).parts[0] for path in FILES}
    assert kinds == {"inclusion", "consistency", "subtreeinclusion", "subtreeconsistency"}
    assert len(FILES) > 500


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(VECTORS)) for p in FILES])
def test_reference_vector(path: Path) -> None:
    """Every happy path of the transparency-dev vectors verifies and every modified one fails."""
    case = json.loads(path.read_text())
    kind = path.relative_to(VECTORS).parts[0]
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _check(kind, case)
    else:
        _check(kind, case)


def _naive_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_naive_root(leaves[:k]), _naive_root(leaves[k:]))


LEAVES = [merkle.leaf_hash(f"leaf {i}".encode()) for i in range(40)]


def test_domain_separation() -> None:
    """A leaf hash and a node hash of the same bytes differ (0x00 / 0x01 prefixes)."""
    data = LEAVES[0] + LEAVES[1]
    assert merkle.leaf_hash(data) != merkle.node_hash(LEAVES[0], LEAVES[1])
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()


@pytest.mark.parametrize("size", range(0, 40))
def test_roots_and_frontier_match_the_definition(size: int) -> None:
    """The tree hash, the incremental frontier and the compact-range root agree with RFC 9162's recursion."""
    expected = _naive_root(LEAVES[:size])
    assert merkle.subtree_root(LEAVES, 0, size) == expected
    frontier = merkle.Frontier()
    frontier.extend(LEAVES[:size])
    assert frontier.root() == expected
    assert merkle.Frontier(size, frontier.hashes).root() == expected
    for begin in range(0, size + 1, 3):
        for end in range(begin, size + 1, 4):
            left = merkle.range_hashes(LEAVES, 0, begin)
            right = merkle.range_hashes(LEAVES, end, size)
            assert merkle.root_from_range(size, begin, end, left, LEAVES[begin:end], right) == expected


@pytest.mark.parametrize("size", range(1, 40))
def test_generated_proofs_verify(size: int) -> None:
    """Our inclusion proofs for every leaf and consistency proofs from every smaller size verify."""
    root = _naive_root(LEAVES[:size])
    for index in range(size):
        merkle.verify_inclusion(index, size, LEAVES[index], merkle.inclusion_proof(LEAVES, index, size), root)
    for old in range(1, size + 1):
        proof = merkle.consistency_proof(LEAVES, old, size)
        merkle.verify_consistency(old, size, proof, _naive_root(LEAVES[:old]), root)


def test_tampered_proofs_fail() -> None:
    """A proof with one flipped bit, a wrong index or a wrong size does not verify."""
    size, index = 27, 11
    root = _naive_root(LEAVES[:size])
    proof = merkle.inclusion_proof(LEAVES, index, size)
    for position in range(len(proof)):
        bad = list(proof)
        bad[position] = bytes([bad[position][0] ^ 1]) + bad[position][1:]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, LEAVES[index], bad, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index + 1, size, LEAVES[index], proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size * 2, LEAVES[index], proof, root)
    consistency = merkle.consistency_proof(LEAVES, 13, size)
    with pytest.raises(ProofError):
        merkle.verify_consistency(13, size, consistency[:-1], _naive_root(LEAVES[:13]), root)
    with pytest.raises(ProofError):
        merkle.verify_consistency(13, size, consistency, _naive_root(LEAVES[:12]), root)


def test_compact_range_with_wrong_counts_is_refused() -> None:
    """Rebuilding a root from ranges whose hash counts do not fit the range is an error, not a root."""
    left = merkle.range_hashes(LEAVES, 0, 5)
    with pytest.raises(ProofError):
        merkle.root_from_range(10, 5, 10, left[:-1], LEAVES[5:10], [])
    with pytest.raises(ProofError):
        merkle.root_from_range(10, 5, 10, left, LEAVES[5:9], [])
