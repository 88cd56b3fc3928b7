"""Faults injected at random while the load runs: a buyer replica or the partner SIGKILLed and started
again after a short downtime, or every database connection cut (new ones refused for a moment).

The schedule is drawn from a seeded generator, so a failing run can be repeated with its seed
(the timing of the processes themselves still varies from run to run).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from node.launcher import LaunchError
from tests.chaos.cluster import Cluster, Member

KINDS = ("kill_replica", "kill_partner", "cut_database")
RESTART_FOR_S = 120.0


@dataclass
class Fault:
    """One injected fault: when (seconds into the run), what, and on which target."""

    at_s: float
    kind: str
    target: str
    detail: str = ""


@dataclass
class Faults:
    """Injects faults into a cluster every `every_s` (a range) until the window closes."""

    cluster: Cluster
    seed: int
    every_s: tuple[float, float] = (1.5, 4.0)
    down_s: tuple[float, float] = (0.5, 3.0)
    refuse_s: tuple[float, float] = (0.0, 1.5)
    log: list[Fault] = field(default_factory=list)
    restart_failures: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        """Faults injected, by kind."""
        return dict(sorted(Counter(fault.kind for fault in self.log).items()))

    async def run(self, over: Callable[[], bool]) -> None:
        """Inject faults until `over()` says the window has closed; restarts still due finish in `recover`."""
        draw = random.Random(self.seed)
        started = time.monotonic()
        while True:
            await asyncio.sleep(draw.uniform(*self.every_s))
            if over():
                return
            kind = draw.choice(KINDS)
            at_s = round(time.monotonic() - started, 2)
            if kind == "cut_database":
                refuse_s = draw.uniform(*self.refuse_s)
                self.cluster.db_proxy.refuse(refuse_s)
                cut = self.cluster.db_proxy.cut()
                self.log.append(
                    Fault(at_s, kind, "postgresql", f"{cut} connections, refused {refuse_s:.1f} s")
                )
                continue
            candidates = self.cluster.replicas if kind == "kill_replica" else [self.cluster.seller]
            up = [member for member in candidates if member is not None and not member.down]
            if not up:
                continue
            member = draw.choice(up)
            down_s = draw.uniform(*self.down_s)
            self.log.append(Fault(at_s, kind, member.name, f"down {down_s:.1f} s"))
            task = asyncio.create_task(self._kill_and_restart(member, down_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _kill_and_restart(self, member: Member, down_s: float) -> None:
        await self.cluster.kill(member)
        await asyncio.sleep(down_s)
        await self._restart(member)

    async def _restart(self, member: Member) -> None:
        """Start the process again, as a supervisor does: a start that fails (the database cut or
        refused while it starts) is tried again after a second, for up to RESTART_FOR_S."""
        deadline = time.monotonic() + RESTART_FOR_S
        while True:
            try:
                await self.cluster.restart(member)
                return
            except LaunchError:
                self.restart_failures += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)

    async def recover(self) -> None:
        """Wait for restarts under way, then make sure every process is up."""
        while self._tasks:
            await asyncio.gather(*self._tasks)
        for member in self.cluster.members:
            if not member.process.running:
                await self._restart(member)
