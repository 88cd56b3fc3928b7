"""RFC 9162 Merkle tree over SHA-256: tree hash, inclusion and consistency proofs, compact ranges.

Leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right): the domain separation
keeps a leaf from ever being read as an inner node. Proof generation follows RFC 9162 §2.1.3.1 and
§2.1.4.1; verification follows §2.1.3.2 and §2.1.4.2, and, for subtrees [start, end) of a larger
tree, the subtree proofs of the Merkle Tree Certificates draft (transparency-dev vectors cover both).

Compact ranges: the minimal list of perfect, aligned subtrees covering [begin, end). The prefix
[0, n) has one per set bit of n (largest first) and folds from the right into the tree's root; a
verifier given the ranges left and right of some leaves can rebuild the root from those leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from ledger.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_size(n: int) -> int:
    """The largest power of two strictly below n (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# A function giving the RFC 9162 tree hash of leaves [start, end): from leaf hashes in memory, or
# from stored subtree hashes (ledger.store.tree) so a proof needs O(log n) of them, not every leaf.
SubtreeHasher = Callable[[int, int], bytes]


def _hasher(leaves: Sequence[bytes]) -> SubtreeHasher:
    return lambda start, end: subtree_root(leaves, start, end)


def subtree_root(leaves: Sequence[bytes], start: int = 0, end: int | None = None) -> bytes:
    """The RFC 9162 tree hash of leaf hashes [start, end)."""
    end = len(leaves) if end is None else end
    if start == end:
        return EMPTY_ROOT
    frontier = Frontier()
    for index in range(start, end):
        frontier.append(leaves[index])
    return frontier.root()


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 PATH)."""
    size = len(leaves) if size is None else size
    if size > len(leaves):
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    return inclusion_path(_hasher(leaves), index, size)


def inclusion_path(root_of: SubtreeHasher, index: int, size: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `size` leaves, asking `root_of` for subtree hashes."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = split_size(hi - lo)
        if m < k:
            proof.append(root_of(lo + k, hi))
            hi = lo + k
        else:
            proof.append(root_of(lo, lo + k))
            lo, m = lo + k, m - k
    proof.reverse()
    return proof


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int | None = None) -> list[bytes]:
    """The proof that the tree of `old_size` leaves is a prefix of the one of `new_size` (RFC 9162 PROOF)."""
    new_size = len(leaves) if new_size is None else new_size
    if new_size > len(leaves):
        raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
    return consistency_path(_hasher(leaves), old_size, new_size)


def consistency_path(root_of: SubtreeHasher, old_size: int, new_size: int) -> list[bytes]:
    """The consistency proof from `old_size` to `new_size`, asking `root_of` for subtree hashes."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
    proof: list[bytes] = []
    lo, hi, m, known = 0, new_size, old_size, True
    while m != hi - lo:
        k = split_size(hi - lo)
        if m <= k:
            proof.append(root_of(lo + k, hi))
            hi = lo + k
        else:
            proof.append(root_of(lo, lo + k))
            lo, m, known = lo + k, m - k, False
    if not known:
        proof.append(root_of(lo, hi))
    proof.reverse()
    return proof


def _check_hashes(proof: Sequence[bytes]) -> None:
    if any(len(h) != HASH_SIZE for h in proof):
        raise ProofError(f"every proof hash must be {HASH_SIZE} bytes")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2), or ProofError if it is malformed."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"leaf hash must be {HASH_SIZE} bytes")
    _check_hashes(proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is high")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows leaf hash `leaf` at `index` in the tree `(size, root)`."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof of leaf {index} does not reach the root of size {size}")


def valid_subtree(start: int, end: int) -> bool:
    """Whether [start, end) is a subtree range: non-empty, and start aligned to bit_ceil(end - start)."""
    if not 0 <= start < end:
        return False
    width = 1 << (end - start - 1).bit_length()
    return start % width == 0


def verify_subtree_inclusion(
    index: int, start: int, end: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `proof` shows `leaf` at `index` in subtree [start, end) with hash `root`."""
    if not valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a valid subtree")
    if not start <= index < end:
        raise ProofError(f"leaf {index} is outside the subtree [{start}, {end})")
    if root_from_inclusion(index - start, end - start, leaf, proof) != root:
        raise ProofError("subtree inclusion proof does not reach the subtree's hash")


def _subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], sub_root: bytes, root: bytes
) -> None:
    _check_hashes(proof)
    fn, sn, tn = start, end - 1, size - 1

    def up() -> None:
        nonlocal fn, sn, tn
        fn, sn, tn = fn >> 1, sn >> 1, tn >> 1

    if sn == tn:
        while fn != sn:
            up()
    else:
        while fn != sn and sn & 1:
            up()
    if fn == sn:
        fr = sr = sub_root
        rest = list(proof)
    else:
        if not proof:
            raise ProofError("empty consistency proof")
        fr = sr = proof[0]
        rest = list(proof[1:])
    for c in rest:
        if tn == 0:
            raise ProofError("consistency proof is longer than the tree is high")
        if sn & 1 or sn == tn:
            if fn < sn:
                fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not sn & 1:
                up()
        else:
            sr = node_hash(sr, c)
        up()
    if tn != 0:
        raise ProofError("consistency proof is shorter than the tree is high")
    if fr != sub_root:
        raise ProofError("consistency proof does not reach the older root")
    if sr != root:
        raise ProofError("consistency proof does not reach the newer root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ProofError unless `proof` shows tree (size1, root1) is a prefix of tree (size2, root2)."""
    if size1 > size2:
        raise ProofError(f"older size {size1} is larger than newer size {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty proof")
        if root1 != root2:
            raise ProofError("trees of equal size have different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    _subtree_consistency(0, size1, size2, proof, root1, root2)


def verify_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], sub_root: bytes, root: bytes
) -> None:
    """Raise ProofError unless subtree [start, end) with hash `sub_root` sits in tree (size, root)."""
    if start == end:
        # An empty range is in every tree; its hash is the empty tree's and it needs no proof.
        if end > size or proof or sub_root != EMPTY_ROOT:
            raise ProofError("an empty subtree needs the empty hash and an empty proof")
        return
    if not valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a valid subtree")
    if end > size:
        raise ProofError(f"subtree [{start}, {end}) does not fit a tree of size {size}")
    _subtree_consistency(start, end, size, proof, sub_root, root)


def range_nodes(begin: int, end: int) -> list[tuple[int, int]]:
    """The (level, index) of each perfect aligned subtree of the compact range [begin, end), left to right."""
    nodes = []
    while begin < end:
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length()
        while begin + (1 << level) > end:
            level -= 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def range_hashes(leaves: Sequence[bytes] | SubtreeHasher, begin: int, end: int) -> list[bytes]:
    """The hashes of the compact range [begin, end), from leaf hashes or a subtree hasher."""
    root_of = leaves if callable(leaves) else _hasher(leaves)
    return [root_of(index << level, (index + 1) << level) for level, index in range_nodes(begin, end)]


def root_from_range(
    size: int, begin: int, end: int, left: Sequence[bytes], leaves: Sequence[bytes], right: Sequence[bytes]
) -> bytes:
    """The root of a tree of `size` leaves from the compact ranges [0, begin) and [end, size) and the
    leaf hashes in between; ProofError if the counts do not fit the ranges."""
    if not 0 <= begin <= end <= size:
        raise ProofError(f"range [{begin}, {end}) does not fit a tree of size {size}")
    left_nodes, right_nodes = range_nodes(0, begin), range_nodes(end, size)
    if len(left) != len(left_nodes) or len(right) != len(right_nodes) or len(leaves) != end - begin:
        raise ProofError("compact range hashes do not match the range")
    _check_hashes([*left, *leaves, *right])
    stack: list[tuple[int, int, bytes]] = []
    nodes = [
        *zip(left_nodes, left, strict=True),
        *(((0, begin + i), h) for i, h in enumerate(leaves)),
        *zip(right_nodes, right, strict=True),
    ]
    for (level, index), digest in nodes:
        stack.append((level, index, digest))
        while len(stack) >= 2:
            (l1, i1, h1), (l2, i2, h2) = stack[-2], stack[-1]
            if l1 != l2 or i1 % 2 or i2 != i1 + 1:
                break
            stack[-2:] = [(l1 + 1, i1 >> 1, node_hash(h1, h2))]
    return _fold([h for _, _, h in stack])


def _fold(hashes: Sequence[bytes]) -> bytes:
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for digest in reversed(hashes[:-1]):
        result = node_hash(digest, result)
    return result


class Frontier:
    """The compact range of a growing tree's prefix [0, size): append leaves, read the root."""

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self._nodes: list[tuple[int, bytes]] = []
        levels = [level for level, _ in range_nodes(0, size)]
        given = list(hashes)
        if len(given) != len(levels):
            raise ProofError(f"a frontier of size {size} has {len(levels)} hashes, got {len(given)}")
        _check_hashes(given)
        self._nodes = list(zip(levels, given, strict=True))
        self.size = size

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        level, digest = 0, leaf
        while self._nodes and self._nodes[-1][0] == level:
            digest = node_hash(self._nodes.pop()[1], digest)
            level += 1
        self._nodes.append((level, digest))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    @property
    def hashes(self) -> list[bytes]:
        """The compact range's hashes, largest subtree first."""
        return [digest for _, digest in self._nodes]

    def root(self) -> bytes:
        """The RFC 9162 root of the tree so far."""
        return _fold(self.hashes)
