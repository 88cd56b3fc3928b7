"""Per-module tables: the best grouping of one module's sub-modules for each service count c.

Three ways to fill a table, chosen per module:

- **Equal availabilities** (any size, exact): with w = −ln a and a service of n sub-modules costing
  φ(n·w) where φ(s) = −ln(1 − (1 − e^{−s})^k), φ is convex (φ'(s) = k / Σ_{j<k} (1−e^{−s})^{−j}
  grows with s), so the most balanced split of J into c block sizes is optimal.
- **Heterogeneous, J ≤ exact_limit** (exact): a dynamic programme over subsets,
  best[c][S] = max over blocks B ∋ min(S) of value(B) · best[c−1][S∖B], O(J·3^J).
- **Heterogeneous, J > exact_limit** (heuristic, bounded): longest-processing-time greedy on the
  weights w_j = −ln a_j (each sub-module, heaviest first, to the lightest service), then
  improving moves and swaps. Guarantees, both stated per c in the table:
  *no grouping does better* than U_c = min((1 − (1 − G^{1/c})^k)^c, full split), G = Π a_j
  (Jensen on convex φ; splitting never lowers availability); and the greedy result is *at
  least* L_c = (1 − (1 − e^{−(W/c + w_max)})^k)^c, W = Σ w_j, because greedy keeps every
  service's weight within w_max of the lightest one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from node.availability.model import service_availability

DEFAULT_EXACT_LIMIT = 10  # 10 sub-modules: ~3·10^5 subset steps, well under a second
MAX_EXACT_LIMIT = 14


@dataclass(frozen=True)
class GroupingOption:
    """The grouping chosen for one service count: availability, blocks of indices, guarantees."""

    availability: float
    groups: tuple[tuple[int, ...], ...]
    exact: bool
    upper_bound: float  # no grouping with this many services exceeds it (== availability when exact)
    lower_bound: float  # the grouping reaches at least this (== availability when exact)


def balanced_sizes(n: int, blocks: int) -> list[int]:
    """Block sizes of the most balanced split of n items into `blocks` (larger blocks first)."""
    base, extra = divmod(n, blocks)
    return [base + 1] * extra + [base] * (blocks - extra)


def _equal_table(avails: Sequence[float], k: int) -> tuple[GroupingOption, ...]:
    options = []
    for c in range(1, len(avails) + 1):
        groups, start = [], 0
        for size in balanced_sizes(len(avails), c):
            groups.append(tuple(range(start, start + size)))
            start += size
        value = math.prod(service_availability((avails[j] for j in g), k) for g in groups)
        options.append(GroupingOption(value, tuple(groups), True, value, value))
    return tuple(options)


def _exact_table(avails: Sequence[float], k: int) -> tuple[GroupingOption, ...]:
    n = len(avails)
    full = (1 << n) - 1
    up = [1.0] * (full + 1)
    for mask in range(1, full + 1):
        low = mask & -mask
        up[mask] = up[mask ^ low] * avails[low.bit_length() - 1]
    value = [1.0 - (1.0 - p) ** k for p in up]
    best: list[list[float]] = [[0.0] * (full + 1) for _ in range(n + 1)]
    pick: list[list[int]] = [[0] * (full + 1) for _ in range(n + 1)]
    best[0][0] = 1.0
    popcount = [bin(mask).count("1") for mask in range(full + 1)]
    for mask in range(1, full + 1):
        best[1][mask], pick[1][mask] = value[mask], mask
    for c in range(2, n + 1):
        row, prev, row_pick = best[c], best[c - 1], pick[c]
        for mask in range(1, full + 1):
            if popcount[mask] < c:
                continue
            low = mask & -mask
            rest = mask ^ low
            top, top_block = 0.0, 0
            sub = rest
            while True:  # every block = low | sub, sub ⊆ rest, leaving ≥ c−1 items for c−1 blocks
                remaining = rest ^ sub
                if popcount[remaining] >= c - 1:
                    candidate = value[low | sub] * prev[remaining]
                    if candidate > top:
                        top, top_block = candidate, low | sub
                if sub == 0:
                    break
                sub = (sub - 1) & rest
            row[mask], row_pick[mask] = top, top_block
    options = []
    for c in range(1, n + 1):
        groups, mask = [], full
        for left in range(c, 0, -1):
            block = pick[left][mask]
            groups.append(tuple(j for j in range(n) if block >> j & 1))
            mask ^= block
        options.append(GroupingOption(best[c][full], tuple(groups), True, best[c][full], best[c][full]))
    return tuple(options)


def _cost(weight: float, k: int) -> float:
    """φ(s): −ln of the availability of one service whose sub-modules' weights sum to s."""
    return -math.log1p(-((-math.expm1(-weight)) ** k)) if weight > 0 else 0.0


def _greedy_groups(weights: Sequence[float], c: int, k: int) -> list[list[int]]:
    order = sorted(range(len(weights)), key=lambda j: (-weights[j], j))
    groups: list[list[int]] = [[] for _ in range(c)]
    sums = [0.0] * c
    for j in order:
        target = min(range(c), key=lambda b: (sums[b], len(groups[b]), b))  # empty first
        groups[target].append(j)
        sums[target] += weights[j]
    improved = True
    while improved:  # first-improvement local search; each accepted step strictly lowers total cost
        improved = False
        for a in range(c):
            for b in range(c):
                if a == b:
                    continue
                for j in list(groups[a]):
                    before = _cost(sums[a], k) + _cost(sums[b], k)
                    if len(groups[a]) > 1:
                        moved = _cost(sums[a] - weights[j], k) + _cost(sums[b] + weights[j], k)
                        if moved < before - 1e-15:
                            groups[a].remove(j)
                            groups[b].append(j)
                            sums[a] -= weights[j]
                            sums[b] += weights[j]
                            improved = True
                            break
                    for i in groups[b]:
                        delta = weights[j] - weights[i]
                        swapped = _cost(sums[a] - delta, k) + _cost(sums[b] + delta, k)
                        if swapped < before - 1e-15:
                            groups[a][groups[a].index(j)] = i
                            groups[b][groups[b].index(i)] = j
                            sums[a] -= delta
                            sums[b] += delta
                            improved = True
                            break
                    if improved:
                        break
                if improved:
                    break
            if improved:
                break
    return [sorted(group) for group in groups]


def _heuristic_table(avails: Sequence[float], k: int) -> tuple[GroupingOption, ...]:
    weights = [-math.log(a) for a in avails]
    total, heaviest = sum(weights), max(weights)
    split_all = math.prod(service_availability((a,), k) for a in avails)
    options = []
    for c in range(1, len(avails) + 1):
        groups = sorted((tuple(g) for g in _greedy_groups(weights, c, k)), key=lambda g: g[0])
        value = math.prod(service_availability((avails[j] for j in g), k) for g in groups)
        upper = min(math.exp(-c * _cost(total / c, k)), split_all)
        lower = math.exp(-c * _cost(total / c + heaviest, k))
        options.append(GroupingOption(value, tuple(groups), False, max(upper, value), min(lower, value)))
    return tuple(options)


@lru_cache(maxsize=4096)
def module_table(
    avails: tuple[float, ...], k: int, exact_limit: int = DEFAULT_EXACT_LIMIT
) -> tuple[GroupingOption, ...]:
    """Best grouping of a module with sub-module availabilities `avails` for c = 1..J services."""
    if len(set(avails)) == 1 or k == 1:
        # With one instance every grouping has availability Π a_j, so any split is exact.
        return _equal_table(avails, k)
    if len(avails) <= exact_limit:
        return _exact_table(avails, k)
    return _heuristic_table(avails, k)
