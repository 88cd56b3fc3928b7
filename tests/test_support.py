"""The suite's own machinery: tests that start processes are found and marked `slow`, and the one
poller waits for sync and async conditions and fails at its deadline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from node.launcher import NodeProcess
from tests.support.polling import eventually, wait_for
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
