"""Giving benchmarked processes CPUs of their own (Linux), so two nodes measured on one machine run
as on two: each on its own core, not migrated between cores nor preempted by the other node's
threads while holding its interpreter lock.

    with separate_cpus(buyer_pid, [seller_pid, os.getpid()]) as placed:
        ...  # the buyer alone on one CPU; the seller and this process share another
    placed  # {"alone": 0, "together": 1} (both None when fewer than two CPUs are usable)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order ([] where the system cannot tell)."""
    getter = getattr(os, "sched_getaffinity", None)
    return [] if getter is None else sorted(getter(0))


def pin_process(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of process `pid` to `cpus` (threads it starts later inherit this from
    the thread that starts them); a thread that ended meanwhile is skipped."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


@contextlib.contextmanager
def separate_cpus(alone: int, together: list[int]) -> Iterator[dict[str, int | None]]:
    """Process `alone` on the first usable CPU, the processes `together` on the second, until the
    block ends (then every usable CPU again, for those still running); with fewer than two usable
    CPUs nothing is pinned and both CPUs are reported None."""
    cpus = usable_cpus()
    if len(cpus) < 2:
        yield {"alone": None, "together": None}
        return
    everything = set(cpus)
    pin_process(alone, {cpus[0]})
    for pid in together:
        pin_process(pid, {cpus[1]})
    try:
        yield {"alone": cpus[0], "together": cpus[1]}
    finally:
        for pid in (alone, *together):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                pin_process(pid, everything)
