"""Pool figures (pure): what a node reports of its pools, computed from its catalog offers.

One figure per (pool, region, chip vendor, chip model). An offer's capacity is its free units plus
the units open trades hold of it. Offers that share one capacity (`capacity_group`, node.offers)
draw on the same units, so a group is counted once, by the offer of the group that spans the most
chips (then CPUs): a `local-4` and a `local-1` of one pool are not two capacities. The same
function turns a catalog's offers into figures, so a supervisor compares like with like.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BASIS_POINTS = 10_000


@dataclass(frozen=True)
class PoolFigures:
    """Capacity and use of one chip model in one pool region; units are the offers' own units."""

    pool: str
    region: str
    chip_vendor: str
    chip_model: str
    compute_ids: tuple[str, ...]
    capacity_units: int
    free_units: int
    capacity_chips: int
    free_chips: int
    capacity_cpus: int
    free_cpus: int
    metric_score: int | None

    @property
    def utilisation_bp(self) -> int:
        """Share in use, in basis points: of chips when the pool has any, else of CPUs, else of units."""
        for capacity, free in (
            (self.capacity_chips, self.free_chips),
            (self.capacity_cpus, self.free_cpus),
            (self.capacity_units, self.free_units),
        ):
            if capacity > 0:
                return (capacity - min(free, capacity)) * BASIS_POINTS // capacity
        return 0

    def to_json(self) -> dict[str, Any]:
        """The figure as a report carries it (integers and strings only)."""
        return {
            "pool": self.pool,
            "region": self.region,
            "chip_vendor": self.chip_vendor,
            "chip_model": self.chip_model,
            "compute_ids": list(self.compute_ids),
            "capacity_units": self.capacity_units,
            "free_units": self.free_units,
            "capacity_chips": self.capacity_chips,
            "free_chips": self.free_chips,
            "capacity_cpus": self.capacity_cpus,
            "free_cpus": self.free_cpus,
            "utilisation_bp": self.utilisation_bp,
            "metric_score": self.metric_score,
        }


FigureKey = tuple[str, str, str, str]


def figure_key(item: Mapping[str, Any]) -> FigureKey:
    """(pool, region, chip vendor, chip model) of an offer or a reported figure."""
    return (str(item["pool"]), str(item["region"]), str(item["chip_vendor"]), str(item["chip_model"]))


def pool_figures(offers: Iterable[Mapping[str, Any]], used_by_offer: Mapping[str, int]) -> list[PoolFigures]:
    """Figures of `offers` (catalog offers), with `used_by_offer` the units open trades hold per
    offer id; ordered by pool, region, vendor and model."""
    # key → capacity group → the offer spanning most of it, with its capacity and free units
    groups: dict[FigureKey, dict[str, tuple[tuple[int, int], int, int, Mapping[str, Any]]]] = {}
    compute_ids: dict[FigureKey, set[str]] = {}
    scores: dict[FigureKey, int] = {}
    for offer in offers:
        key = figure_key(offer)
        free = int(offer["free_units"])
        capacity = free + max(0, int(used_by_offer.get(str(offer["id"]), 0)))
        span = (capacity * int(offer["chips_per_unit"]), capacity * int(offer["cpus"]))
        group = offer.get("capacity_group") or f"offer:{offer['id']}"
        best = groups.setdefault(key, {}).get(group)
        if best is None or span > best[0]:
            groups[key][group] = (span, capacity, free, offer)
        compute_id = offer.get("compute_id")
        ids = compute_ids.setdefault(key, set())
        if compute_id:
            ids.add(str(compute_id))
        score = offer.get("metric_score")
        if isinstance(score, int):
            scores[key] = max(score, scores.get(key, score))
    figures = []
    for key in sorted(groups):
        capacity_units = free_units = capacity_chips = free_chips = capacity_cpus = free_cpus = 0
        for _, capacity, free, offer in groups[key].values():
            chips, cpus = int(offer["chips_per_unit"]), int(offer["cpus"])
            capacity_units += capacity
            free_units += free
            capacity_chips += capacity * chips
            free_chips += free * chips
            capacity_cpus += capacity * cpus
            free_cpus += free * cpus
        figures.append(
            PoolFigures(
                *key,
                compute_ids=tuple(sorted(compute_ids[key])),
                capacity_units=capacity_units,
                free_units=free_units,
                capacity_chips=capacity_chips,
                free_chips=free_chips,
                capacity_cpus=capacity_cpus,
                free_cpus=free_cpus,
                metric_score=scores.get(key),
            )
        )
    return figures
