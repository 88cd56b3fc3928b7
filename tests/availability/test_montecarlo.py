"""Monte Carlo simulation agrees with the analytic availability, and would catch a wrong formula."""

from __future__ import annotations

import pytest

from node.availability import Architecture, PlanInputError, make_plan, simulate, with_availability
from node.availability.montecarlo import wilson_interval


@pytest.mark.parametrize("strategy", ["none", "optimal", "full"])
def test_simulation_confirms_the_analytic_availability(paper: Architecture, strategy: str) -> None:
    """With a fixed seed, the analytic availability lies in the simulation's 99 % interval."""
    arch = with_availability(paper, 0.95)
    plan = make_plan(arch, strategy, 1, 0.97)
    result = simulate(arch, plan, trials=20_000, seed=1)
    assert result.contains(plan.availability), (result, plan.availability)
    assert result.high - result.low < 0.02


def test_simulation_rejects_a_wrong_model(paper: Architecture) -> None:
    """The analytic value with one instance too few falls outside the interval, so the check has teeth."""
    arch = with_availability(paper, 0.95)
    plan = make_plan(arch, "none", 1, 0.97)
    wrong = make_plan(arch, "none", 0, 0.97).availability
    result = simulate(arch, plan, trials=20_000, seed=1)
    assert not result.contains(wrong)


def test_wilson_interval_and_bad_trials(paper: Architecture) -> None:
    """The interval brackets the observed rate; zero or huge trial counts are refused."""
    low, high = wilson_interval(90, 100)
    assert low < 0.9 < high
    assert wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(PlanInputError):
        wilson_interval(0, 0)
    with pytest.raises(PlanInputError):
        simulate(paper, make_plan(paper, "none", 2, 0.99), trials=0)
