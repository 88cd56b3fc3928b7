"""The shipped architecture files and a brute-force planner for the availability tests."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from node.availability import Architecture
from node.availability.model import EPSILON, grouping_availability, meets
from node.availability.partitions import all_partitions

REPO = Path(__file__).resolve().parents[2]


PAPER_TOML = REPO / "configs" / "architecture" / "paper.toml"


NODE_TOML = REPO / "configs" / "architecture" / "node.toml"


@dataclass(frozen=True)
class Brute:
    """What exhaustive search over every combination of set partitions finds."""

    microservices: int
    availability: float
    meets_target: bool


def brute_force(architecture: Architecture, backups: int, target: float) -> Brute:
    """Fewest microservices meeting `target` (best availability among them), by trying every grouping."""
    k = backups + 1
    per_module = []
    for module in architecture.modules:
        avails = module.availabilities
        per_module.append(
            [
                (len(p), grouping_availability(([avails[j] for j in block] for block in p), k))
                for p in all_partitions(len(avails))
            ]
        )
    best_at: dict[int, float] = {}
    for combo in itertools.product(*per_module):
        count = sum(c for c, _ in combo)
        value = math.prod(v for _, v in combo)
        best_at[count] = max(best_at.get(count, 0.0), value)
    feasible = [n for n in sorted(best_at) if meets(best_at[n], target)]
    if feasible:
        return Brute(feasible[0], best_at[feasible[0]], True)
    top = max(best_at.values())
    n = min(n for n, v in best_at.items() if v >= top - EPSILON)
    return Brute(n, best_at[n], False)
