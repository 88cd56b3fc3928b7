"""The suite's own machinery: tests that start processes are found and marked `slow`, the one
poller waits for sync and async conditions and fails at its deadline, and the Hypothesis profiles
set how many examples property tests run."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from hypothesis import settings

from node.launcher import NodeProcess
from tests.support.examples import examples, load_profile
from tests.support.ordering import share_sizes, spread_first
from tests.support.polling import eventually, wait_for, within
from tests.support.processes import starts_processes


def _runs_python() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def _through_a_helper() -> None:
    _runs_python()


class _Wrapper:
    def start(self) -> None:
        _through_a_helper()


def _plain() -> int:
    return sum(range(3))


def _uses_a_node_process(config: str) -> object:
    return NodeProcess(config)  # type: ignore[arg-type]


def test_process_starters_are_found_through_helpers_and_classes() -> None:
    """Direct subprocess use, a helper that uses it, a class whose method reaches it and the node's
    process wrapper all count; plain code does not."""
    assert starts_processes(_runs_python)
    assert starts_processes(_through_a_helper)
    assert starts_processes(lambda: _Wrapper().start())
    assert starts_processes(_uses_a_node_process)
    assert not starts_processes(_plain)


def test_the_hook_marks_process_tests_slow(request: pytest.FixtureRequest) -> None:
    """This test starts nothing, so the collection hook left it unmarked."""
    assert request.node.get_closest_marker("slow") is None


async def test_eventually_awaits_and_times_out() -> None:
    """A coroutine or a plain condition is polled until true; one never true fails naming it."""
    calls = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await eventually(third_time, 5, "three calls", interval_s=0.001)
    assert len(calls) == 3
    with pytest.raises(AssertionError, match=r"never not reached within 0\.05 s"):
        await eventually(lambda: False, 0.05, "never", interval_s=0.01)


def test_wait_for_times_out() -> None:
    """The blocking poller fails at its deadline with what it waited for."""
    with pytest.raises(AssertionError, match=r"nothing not reached within 0\.05 s"):
        wait_for(lambda: False, 0.05, "nothing", interval_s=0.01)


def test_the_ci_profile_runs_a_share_of_each_count_and_thorough_all() -> None:
    """`ci` (the suite's default) runs 30 % of a full count, never below three examples (or the full
    count when smaller); `thorough` runs the full count; an unknown profile is refused."""
    try:
        assert load_profile({}) == "ci"
        assert [examples(n) for n in (1, 5, 15, 40, 300)] == [1, 3, 4, 12, 90]
        assert load_profile({"HYPOTHESIS_PROFILE": "thorough"}) == "thorough"
        assert settings().max_examples == 100
        assert [examples(n) for n in (1, 15, 40, 300)] == [1, 15, 40, 300]
        with pytest.raises(ValueError, match="profiles are ci, thorough"):
            load_profile({"HYPOTHESIS_PROFILE": "quick"})
        with pytest.raises(ValueError, match="at least one example"):
            examples(0)
    finally:
        load_profile()


async def test_within_names_the_step_that_hung() -> None:
    """A block over its bound fails naming the step; one in time passes; the block's own
    TimeoutError stays what it was."""
    async with within(5, "quick step"):
        await asyncio.sleep(0)
    with pytest.raises(AssertionError, match=r"the hung read not done within 0\.05 s"):
        async with within(0.05, "the hung read"):
            await asyncio.Event().wait()
    with pytest.raises(TimeoutError, match="its own"):
        async with within(5, "a step"):
            raise TimeoutError("its own")


def test_shares_are_sized_as_worksteal_deals_them() -> None:
    """Each worker gets what is left divided by the workers left: the shares add up to the whole."""
    assert share_sizes(10, 4) == [2, 2, 3, 3]
    assert share_sizes(3, 4) == [0, 1, 1, 1]
    assert sum(share_sizes(2475, 4)) == 2475


def test_long_tests_open_the_shares_and_the_rest_keep_their_order() -> None:
    """Long tests lead the shares one per worker; the others stay in collection order around them,
    and with one worker nothing moves."""
    items = [f"t{i}" for i in range(12)]
    long = {"t3", "t7", "t11"}
    ordered = spread_first(items, 3, lambda item: item in long)
    assert sorted(ordered) == sorted(items)
    shares = [ordered[0:4], ordered[4:8], ordered[8:12]]
    assert [share[0] for share in shares] == ["t3", "t7", "t11"]
    rest = [item for item in ordered if item not in long]
    assert rest == [item for item in items if item not in long]
    assert spread_first(items, 1, lambda item: item in long) == items


def test_more_long_tests_than_a_share_holds_are_all_kept() -> None:
    """Long tests beyond the shares' room still run (at the end), none lost and none twice."""
    items = [f"t{i}" for i in range(5)]
    ordered = spread_first(items, 4, lambda item: item.startswith("t"))
    assert ordered == ["t0", "t1", "t2", "t3", "t4"]
