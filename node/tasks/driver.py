"""The task driver: runs the action of every unfinished task until it is released.

One replica drives tasks at a time, under the database lease `tasks.driver` (the others' API
still takes submissions and stops; the driver finds them at its next look). Each task has its own
coroutine: it runs the action of the task's state, and when the action says nothing changed it
waits `poll_s` (or until it is nudged: a stop, a submission, or capacity freed for a task waiting
for it). Stopping the node (or losing the lease) cancels the coroutines; every action is
idempotent and every move stored first, so the next driver resumes each task where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from connectors.stopping import stop_tasks
from node import leases
from node.tasks import store
from node.tasks.core import Tasks
from node.tasks.records import Task, TaskKind
from node.tasks.steps import TaskSteps

log = logging.getLogger("cpnode.tasks")
LEASE = "tasks.driver"
LOOK_EVERY_S = 1.0  # how often the driver looks for tasks it does not drive yet
ERROR_BACKOFF_S = 2.0


class Driver:
    """Drives every unfinished task of the given kinds while it holds the lease."""

    def __init__(self, tasks: Tasks, steps: TaskSteps, holder: str, kinds: tuple[TaskKind, ...]) -> None:
        self.tasks = tasks
        self.steps = steps
        self.holder = f"{holder}/tasks"
        self.kinds = kinds
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._nudges: dict[str, asyncio.Event] = {}
        self._look = asyncio.Event()
        self._leased_until = 0.0
        tasks.on_capacity_freed = self.nudge_all

    def nudge(self, task_id: str) -> None:
        """Act on a task now (a submission or a stop): drive it if it is not driven yet."""
        event = self._nudges.get(task_id)
        if event is not None:
            event.set()
        else:
            self._look.set()

    def nudge_all(self) -> None:
        """Act on every task now (capacity was freed: tasks waiting for it try again)."""
        for event in self._nudges.values():
            event.set()

    @property
    def driving(self) -> int:
        """How many tasks this replica drives now."""
        return len(self._driving)

    async def _leased(self) -> bool:
        ttl_s = max(10.0, 4 * LOOK_EVERY_S)
        if time.monotonic() < self._leased_until - 2 * ttl_s / 3:
            return True
        now = self.tasks.clock_ms()
        try:
            ours = await self.tasks.db(leases.try_acquire, LEASE, self.holder, now, int(ttl_s * 1000))
        except (
            Exception
        ) as exc:  # the database may be briefly away: keep what we drive until the lease lapses
            log.warning("tasks: could not renew the driver lease: %s", exc)
            return time.monotonic() < self._leased_until
        self._leased_until = time.monotonic() + ttl_s if ours else 0.0
        return ours

    async def run(self) -> None:
        """Drive tasks until cancelled (the component's lifecycle)."""
        try:
            while True:
                if await self._leased():
                    try:
                        for task_id in await self.tasks.db(store.unfinished_tasks, self.kinds):
                            if task_id not in self._driving:
                                self._start(task_id)
                    except Exception as exc:  # the next look tries again
                        log.warning("tasks: could not look for unfinished tasks: %s", exc)
                else:
                    await self._cancel_all()
                self._look.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LOOK_EVERY_S):
                        await self._look.wait()
        finally:
            await self._cancel_all()
            with contextlib.suppress(Exception):
                await self.tasks.db(leases.release_all, self.holder)

    def _start(self, task_id: str) -> None:
        self._nudges[task_id] = asyncio.Event()
        self._driving[task_id] = asyncio.create_task(self._drive(task_id), name=f"task {task_id}")

    async def _cancel_all(self) -> None:
        await stop_tasks(list(self._driving.values()), "a task's drive")

    async def _drive(self, task_id: str) -> None:
        """Run the task's actions until it is final."""
        nudge = self._nudges[task_id]
        try:
            while True:
                nudge.clear()
                wait_s = self.tasks.settings.poll_s
                task: Task | None = None
                try:
                    task = await self.tasks.get(task_id)
                    if task is None or task.state == "released":
                        return
                    if await self.steps.step(task):
                        continue
                    wait_s = self.steps.idle_s(task)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # one task's trouble must not stop it for good, nor others
                    log.exception("task %s: its %s action failed", task_id, task.state if task else "?")
                    with contextlib.suppress(Exception):
                        if task is not None:
                            await self.tasks.note(task, f"error: {type(exc).__name__}: {exc}"[:500])
                    wait_s = ERROR_BACKOFF_S
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await nudge.wait()
        finally:
            self._driving.pop(task_id, None)
            self._nudges.pop(task_id, None)
