"""Set partitions: Stirling numbers of the second kind and backtracking enumeration (seed eq. 8–9).

Used by the paper's inner layer and by the brute-force check; the exact solver does not
enumerate partitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

Partition = tuple[tuple[int, ...], ...]


@cache
def stirling2(n: int, k: int) -> int:
    """S(n, k): partitions of n labelled items into exactly k non-empty blocks (eq. 8–9)."""
    if n < 0 or k < 0:
        raise ValueError(f"stirling2 needs n, k >= 0, got {n}, {k}")
    if n == k:
        return 1
    if n == 0 or k == 0 or k > n:
        return 0
    return stirling2(n - 1, k - 1) + k * stirling2(n - 1, k)


def bell(n: int) -> int:
    """B(n): all partitions of n labelled items."""
    return sum(stirling2(n, k) for k in range(n + 1))


def partitions_into(n: int, blocks: int) -> Iterator[Partition]:
    """Every partition of items 0..n-1 into exactly `blocks` non-empty blocks, by backtracking.

    Item i goes into an existing block or opens the next one; a branch is cut as soon as the
    items left cannot fill the blocks still unopened, so exactly S(n, blocks) leaves are reached.
    """
    if blocks < 0 or n < 0:
        raise ValueError(f"partitions_into needs n, blocks >= 0, got {n}, {blocks}")
    if blocks > n or (blocks == 0) != (n == 0):
        return
    current: list[list[int]] = []

    def place(item: int) -> Iterator[Partition]:
        if item == n:
            yield tuple(tuple(block) for block in current)
            return
        left = n - item
        if len(current) + left > blocks:  # room to reuse an existing block
            for block in current:
                block.append(item)
                yield from place(item + 1)
                block.pop()
        if len(current) < blocks:
            current.append([item])
            yield from place(item + 1)
            current.pop()

    yield from place(0)


def all_partitions(n: int) -> Iterator[Partition]:
    """Every partition of items 0..n-1 (B(n) of them)."""
    for blocks in range(n + 1):  # n = 0 has one partition, the empty one
        yield from partitions_into(n, blocks)
