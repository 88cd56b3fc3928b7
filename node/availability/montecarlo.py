"""Monte Carlo check of a plan: simulate independent failures, compare with the analytic value.

Each trial draws every sub-module of every instance of every microservice independently (up with
probability a_j). An instance is up when all its sub-modules are; a microservice when any of its
k instances is; the platform when every microservice is. `draw_snapshot` is one such trial; the
live check of a deployed node (tests/chaos/availability.py) applies the same draws to real
processes. The estimate comes with a Wilson score
interval, which stays honest when failures are rare.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from node.availability.errors import PlanInputError
from node.availability.model import Architecture, Plan

MAX_TRIALS = 10_000_000
Z_99 = 2.5758293035489004  # two-sided 99 % normal quantile


@dataclass(frozen=True)
class MonteCarloResult:
    """Trials run, trials with the platform up, and the estimate with its confidence interval."""

    trials: int
    up: int
    estimate: float
    low: float
    high: float
    confidence: float

    def contains(self, availability: float) -> bool:
        """Whether `availability` lies inside the confidence interval."""
        return self.low <= availability <= self.high


def wilson_interval(successes: int, trials: int, z: float = Z_99) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if trials <= 0:
        raise PlanInputError(f"trials must be positive, got {trials}")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def plan_services(architecture: Architecture, plan: Plan) -> list[tuple[float, ...]]:
    """The sub-module availabilities of each microservice of `plan`, modules in order."""
    availability: Mapping[str, float] = {
        sub.name: sub.availability for module in architecture.modules for sub in module.submodules
    }
    try:
        return [
            tuple(availability[name] for name in service)
            for module in plan.modules
            for service in module.services
        ]
    except KeyError as exc:
        raise PlanInputError(f"plan names sub-module {exc.args[0]!r}, which the architecture lacks") from None


Snapshot = tuple[tuple[bool, ...], ...]
"""Which instances are up in one snapshot: per microservice, per instance."""


def draw_snapshot(services: Sequence[Sequence[float]], k: int, draw: Callable[[], float]) -> Snapshot:
    """One independent snapshot: each sub-module of each instance is up with probability a_j (one
    `draw()` in [0, 1) each, until one is down), an instance is up when all its sub-modules are."""
    return tuple(tuple(all(draw() < a for a in service) for _ in range(k)) for service in services)


def platform_up(snapshot: Snapshot) -> bool:
    """Whether every microservice has an instance up."""
    return all(any(instances) for instances in snapshot)


def simulate(architecture: Architecture, plan: Plan, trials: int, seed: int = 0) -> MonteCarloResult:
    """Simulate `trials` independent snapshots of `plan` deployed for `architecture` (99 % interval)."""
    if not 1 <= trials <= MAX_TRIALS:
        raise PlanInputError(f"trials must be 1–{MAX_TRIALS:,}, got {trials}")
    services = plan_services(architecture, plan)
    k = plan.instances
    draw = random.Random(seed).random  # noqa: S311 -- a reproducible simulation, not a secret
    up = sum(platform_up(draw_snapshot(services, k, draw)) for _ in range(trials))
    low, high = wilson_interval(up, trials)
    return MonteCarloResult(trials, up, up / trials, low, high, 0.99)
