"""The exact planner against brute force over all set partitions, and its per-module tables."""

from __future__ import annotations

import math
import random

import pytest

from node.availability import Architecture, Module, Submodule, make_plan, module_table, plan_optimal
from node.availability.model import grouping_availability
from node.availability.partitions import all_partitions
from tests.support.availability import brute_force


def random_architecture(rng: random.Random, max_modules: int = 3, max_size: int = 4) -> Architecture:
    """A small architecture with heterogeneous availabilities, some repeated, some equal per module."""
    palette = [0.8, 0.9, 0.95, 0.99, 0.995, 0.999]
    modules = []
    serial = 0
    for m in range(rng.randint(1, max_modules)):
        size = rng.randint(1, max_size)
        equal = rng.random() < 0.2
        shared = rng.choice(palette)
        subs = []
        for _ in range(size):
            if equal:
                a = shared
            elif rng.random() < 0.4:
                a = rng.choice(palette)
            else:
                a = rng.uniform(0.7, 0.9999)
            subs.append(Submodule(f"s{serial}", a))
            serial += 1
        modules.append(Module(f"m{m}", tuple(subs)))
    return Architecture("random", tuple(modules))


def targets_for(architecture: Architecture, backups: int, rng: random.Random) -> list[float]:
    """Targets spread from below the no-split value to above the full split, so every case is hit."""
    low = make_plan(architecture, "none", backups, 0.5).availability
    high = make_plan(architecture, "full", backups, 0.5).availability
    inside = [low + (high - low) * rng.random() for _ in range(3)]
    return [low * 0.999, *inside, high, min(1.0, high + (1 - high) / 2)]


@pytest.mark.parametrize("seed", range(100))
def test_exact_planner_matches_brute_force(seed: int) -> None:
    """On random small architectures, backups 0–4 and many targets, the planner equals exhaustive search."""
    rng = random.Random(seed)
    for _ in range(4):
        architecture = random_architecture(rng)
        backups = rng.randint(0, 4)
        for target in targets_for(architecture, backups, rng):
            plan = plan_optimal(architecture, backups, target)
            expected = brute_force(architecture, backups, target)
            assert plan.microservices == expected.microservices, (architecture, backups, target)
            assert plan.meets_target == expected.meets_target
            assert plan.availability == pytest.approx(expected.availability, rel=0, abs=1e-12)
            assert plan.exact


@pytest.mark.parametrize("size", range(1, 8))
def test_module_table_is_best_for_every_service_count(size: int) -> None:
    """For each service count c, the table's grouping is the best of all partitions into c blocks."""
    rng = random.Random(size)
    for k in (1, 2, 3, 5):
        for equal in (False, True):
            avails = tuple(
                [rng.uniform(0.6, 0.999)] * size if equal else [rng.uniform(0.6, 0.999) for _ in range(size)]
            )
            best: dict[int, float] = {}
            for partition in all_partitions(size):
                value = grouping_availability(([avails[j] for j in b] for b in partition), k)
                best[len(partition)] = max(best.get(len(partition), 0.0), value)
            table = module_table(avails, k)
            assert len(table) == size
            for c, option in enumerate(table, start=1):
                assert len(option.groups) == c
                assert sorted(j for g in option.groups for j in g) == list(range(size))
                assert option.availability == pytest.approx(best[c], rel=0, abs=1e-13)
                recomputed = grouping_availability(([avails[j] for j in g] for g in option.groups), k)
                assert recomputed == pytest.approx(option.availability, rel=0, abs=1e-15)


def test_heuristic_stays_within_its_stated_bounds() -> None:
    """Above the exact limit, each grouping lies between its guaranteed floor and the proven ceiling."""
    rng = random.Random(7)
    for _ in range(30):
        size = rng.randint(4, 8)
        avails = tuple(rng.uniform(0.5, 0.999) for _ in range(size))
        k = rng.randint(2, 4)
        exact = module_table(avails, k, exact_limit=10)
        heuristic = module_table(avails, k, exact_limit=3)
        for true, guess in zip(exact, heuristic, strict=True):
            assert not guess.exact
            assert guess.lower_bound - 1e-12 <= guess.availability <= true.availability + 1e-12
            assert true.availability <= guess.upper_bound + 1e-12


def test_large_module_plan_reports_bounds() -> None:
    """A module beyond the exact limit is planned, marked inexact, and the plan states its bounds."""
    rng = random.Random(3)
    subs = tuple(Submodule(f"s{j}", rng.uniform(0.9, 0.999)) for j in range(12))
    architecture = Architecture("big", (Module("big", subs), Module("small", (Submodule("x", 0.99),))))
    plan = plan_optimal(architecture, 2, 0.995, exact_limit=8)
    assert plan.meets_target
    assert not plan.exact
    assert plan.availability_upper_bound is not None
    assert plan.availability <= plan.availability_upper_bound + 1e-15
    assert plan.microservices_lower_bound is not None
    assert plan.microservices_lower_bound <= plan.microservices
    assert any("bounded heuristic" in note for note in plan.notes)
    assert plan.to_dict()["bounds"]["microservices_at_least"] == plan.microservices_lower_bound


def test_zero_backups_keeps_one_service_per_module() -> None:
    """With no backups every grouping is equally available, so the fewest services (one per module) win."""
    architecture = random_architecture(random.Random(11), max_modules=3, max_size=4)
    plan = plan_optimal(architecture, 0, 0.999999)
    assert plan.microservices == len(architecture.modules)
    assert plan.availability == pytest.approx(
        math.prod(s.availability for m in architecture.modules for s in m.submodules)
    )


def test_unmet_target_reports_highest_availability_with_fewest_services(paper: Architecture) -> None:
    """When no grouping reaches the target, the plan is the full split's availability and says so."""
    plan = plan_optimal(paper, 2, 0.999999)
    full = make_plan(paper, "full", 2, 0.999999)
    assert not plan.meets_target
    assert plan.availability == pytest.approx(full.availability, rel=0, abs=1e-15)
    assert plan.microservices == 24
    assert "not met" in plan.notes[0]


def test_bad_parameters_are_refused(paper: Architecture) -> None:
    """Out-of-range backups, targets, strategies and limits raise PlanInputError, a ValueError."""
    from node.availability import PlanInputError

    for strategy, backups, target in (
        ("optimal", -1, 0.99),
        ("optimal", 2, 1.5),
        ("optimal", 2, 0.0),
        ("greedy", 2, 0.99),
    ):
        with pytest.raises(PlanInputError):
            make_plan(paper, strategy, backups, target)
    with pytest.raises(PlanInputError):
        plan_optimal(paper, 2, 0.99, exact_limit=40)
    assert issubclass(PlanInputError, ValueError)
