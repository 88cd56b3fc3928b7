"""The exact planner and the no/full partition baselines.

The exact planner fills one table per module (`grouping.module_table`: the best grouping for each
service count c) and combines the tables with a knapsack-style dynamic programme over the total
service count n: F_m[n] = max_c F_{m−1}[n − c] · best_m[c]. The answer is the smallest n with
F[n] ≥ target and its grouping; if no n reaches the target, the highest F[n] and the smallest n
reaching it, marked as not meeting the target. Cost: Σ_m table_m + O(M · N · J_max).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from node.availability.errors import PlanInputError
from node.availability.grouping import DEFAULT_EXACT_LIMIT, MAX_EXACT_LIMIT, GroupingOption, module_table
from node.availability.model import (
    EPSILON,
    Architecture,
    ModulePlan,
    Plan,
    build_plan,
    check_availability,
    instances,
    meets,
)
from node.availability.paper import plan_paper

STRATEGIES: tuple[str, ...] = ("optimal", "none", "full", "paper")


def _knapsack(tables: Sequence[Sequence[float]]) -> tuple[list[float], list[list[int]]]:
    """F[n] (index n, −1.0 when unreachable) and, per module, the service count chosen at each n."""
    total = [1.0]
    choices: list[list[int]] = []
    for table in tables:
        nxt = [-1.0] * (len(total) + len(table))
        chosen = [0] * len(nxt)
        for n, value in enumerate(total):
            if value < 0:
                continue
            for c, option in enumerate(table, start=1):
                candidate = value * option
                if candidate > nxt[n + c]:
                    nxt[n + c], chosen[n + c] = candidate, c
        total = nxt
        choices.append(chosen)
    return total, choices


def _counts_at(choices: list[list[int]], n: int) -> list[int]:
    counts = []
    for chosen in reversed(choices):
        counts.append(chosen[n])
        n -= chosen[n]
    return counts[::-1]


def _pick_count(totals: Sequence[float], target: float) -> tuple[int, bool]:
    """The smallest n meeting `target`, else the smallest n reaching the best availability."""
    for n, value in enumerate(totals):
        if value >= 0 and meets(value, target):
            return n, True
    best = max(totals)
    return next(n for n, value in enumerate(totals) if value >= best - EPSILON), False


def plan_optimal(
    architecture: Architecture, backups: int, target: float, exact_limit: int = DEFAULT_EXACT_LIMIT
) -> Plan:
    """The fewest microservices meeting `target` and, among those, the highest availability."""
    target = check_availability(target, "target")
    if not 1 <= exact_limit <= MAX_EXACT_LIMIT:
        raise PlanInputError(f"exact limit must be 1–{MAX_EXACT_LIMIT} sub-modules, got {exact_limit}")
    k = instances(backups)
    tables: list[tuple[GroupingOption, ...]] = [
        module_table(module.availabilities, k, exact_limit) for module in architecture.modules
    ]
    totals, choices = _knapsack([[o.availability for o in t] for t in tables])
    n, met = _pick_count(totals, target)
    counts = _counts_at(choices, n)
    chosen = [table[c - 1] for table, c in zip(tables, counts, strict=True)]
    notes: list[str] = []
    if not met:
        notes.append(
            f"target {target} is not met: the highest reachable availability is {totals[n]:.10f}, "
            f"first reached with {n} microservices"
        )
    extra: dict[str, object] = {}
    if not all(o.exact for t in tables for o in t):
        upper_totals, _ = _knapsack([[o.upper_bound for o in t] for t in tables])
        lower_n = next((m for m, v in enumerate(upper_totals) if v >= 0 and meets(v, target)), None)
        extra = {"availability_upper_bound": upper_totals[n], "microservices_lower_bound": lower_n}
        big = [m.name for m, t in zip(architecture.modules, tables, strict=True) if not t[0].exact]
        notes.append(
            f"module(s) {', '.join(big)} exceed the exact limit of {exact_limit} sub-modules and were "
            "grouped by the bounded heuristic: no plan with this many microservices exceeds "
            f"{upper_totals[n]:.10f}"
            + (f", and none with fewer than {lower_n} can meet the target" if lower_n is not None else "")
        )
    plan = build_plan(
        architecture,
        "optimal",
        backups,
        target,
        [option.groups for option in chosen],
        notes=tuple(notes),
        **extra,
    )
    modules = tuple(
        ModulePlan(
            m.name, m.services, m.availability, option.exact, None if option.exact else option.upper_bound
        )
        for m, option in zip(plan.modules, chosen, strict=True)
    )
    return replace(plan, modules=modules)


def plan_none(architecture: Architecture, backups: int, target: float) -> Plan:
    """Baseline: one microservice per module (no partition)."""
    groups = [[tuple(range(len(module.submodules)))] for module in architecture.modules]
    return build_plan(architecture, "none", backups, check_availability(target, "target"), groups)


def plan_full(architecture: Architecture, backups: int, target: float) -> Plan:
    """Baseline: one microservice per sub-module (full partition, the highest availability)."""
    groups = [[(j,) for j in range(len(module.submodules))] for module in architecture.modules]
    return build_plan(architecture, "full", backups, check_availability(target, "target"), groups)


def make_plan(
    architecture: Architecture,
    strategy: str = "optimal",
    backups: int = 2,
    target: float = 0.9999,
    exact_limit: int = DEFAULT_EXACT_LIMIT,
) -> Plan:
    """Plan `architecture` with one of STRATEGIES."""
    if strategy == "optimal":
        return plan_optimal(architecture, backups, target, exact_limit)
    if strategy == "none":
        return plan_none(architecture, backups, target)
    if strategy == "full":
        return plan_full(architecture, backups, target)
    if strategy == "paper":
        return plan_paper(architecture, backups, target)
    raise PlanInputError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
