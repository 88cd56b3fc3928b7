"""The benchmark's CPU placement (`bench.affinity`): two real processes, each with a second thread,
put on CPUs of their own and given every CPU back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.affinity import separate_cpus, usable_cpus

TWO_THREADS = (
    "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"
)


def _threads(pid: int) -> list[int]:
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def _affinities(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(tid)) for tid in _threads(pid)}


@pytest.fixture(name="pair")
def fixture_pair() -> Iterator[tuple[int, int]]:
    """Two processes with two threads each, killed at the end."""
    procs = [subprocess.Popen([sys.executable, "-c", TWO_THREADS]) for _ in range(2)]
    try:
        deadline = time.monotonic() + 10
        while any(len(_threads(p.pid)) < 2 for p in procs):
            assert time.monotonic() < deadline, "the processes did not start their threads"
            time.sleep(0.01)
        yield procs[0].pid, procs[1].pid
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


@pytest.mark.skipif(len(usable_cpus()) < 2, reason="needs two usable CPUs")
def test_separate_cpus_pins_every_thread_then_gives_every_cpu_back(pair: tuple[int, int]) -> None:
    alone, other = pair
    cpus = usable_cpus()
    with separate_cpus(alone, [other]) as placed:
        assert placed == {"alone": cpus[0], "together": cpus[1]}
        assert _affinities(alone) == {frozenset({cpus[0]})}
        assert _affinities(other) == {frozenset({cpus[1]})}
    assert _affinities(alone) == _affinities(other) == {frozenset(cpus)}


def test_separate_cpus_pins_nothing_with_one_cpu(
    pair: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    alone, other = pair
    before = _affinities(alone), _affinities(other)
    monkeypatch.setattr("bench.affinity.usable_cpus", lambda: [0])
    with separate_cpus(alone, [other]) as placed:
        assert placed == {"alone": None, "together": None}
        assert (_affinities(alone), _affinities(other)) == before
