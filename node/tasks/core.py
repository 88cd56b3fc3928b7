"""What every part of task delivery shares: the node, its database, pools, buyer and settings."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import Engine

from connectors.contract import ComputePlugin
from connectors.host import PluginHost
from node.db import in_thread
from node.offers import OfferSource
from node.tasks import store
from node.tasks.errors import TasksUnavailableError
from node.tasks.machine import TaskEvent
from node.tasks.records import Task
from node.tasks.settings import TasksSection
from node.trading.buyer import Buyer

T = TypeVar("T")
P = ParamSpec("P")


def now_ms() -> int:
    """Wall-clock time in UTC epoch milliseconds."""
    return int(time.time() * 1000)


def instance_name(task_id: str) -> str:
    """The name a task's instance gets on its pool (a pool name: short, a–z 0–9 and '-')."""
    return "t-" + hashlib.sha256(task_id.encode()).hexdigest()[:16]


@dataclass
class Tasks:
    """One node's task delivery: who it is, its database, pools (when hosted here), buyer, settings."""

    name: str
    engine: Engine
    host: PluginHost | None
    buyer: Buyer
    offer_sources: Mapping[str, OfferSource]
    settings: TasksSection
    data_dir: Path
    clock_ms: Callable[[], int] = field(default=now_ms)
    # Told when a pool may have free capacity again (the driver wakes tasks waiting for it).
    on_capacity_freed: Callable[[], None] = field(default=lambda: None)
    # Counts the times capacity was freed here, so tasks waiting for it know when to look again.
    capacity_epoch: int = 0

    def capacity_freed(self) -> None:
        """A pool of this node has units free again: count it and wake whoever waits for them."""
        self.capacity_epoch += 1
        self.on_capacity_freed()

    @property
    def currency(self) -> str:
        """The currency this node trades in."""
        return self.buyer.trading.settings.currency

    async def db(self, fn: Callable[Concatenate[Engine, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking database call `fn(engine, ...)` on the engine's own threads (node.db.threads)."""
        return await in_thread(self.engine, fn, *args, **kwargs)

    async def get(self, task_id: str) -> Task | None:
        """One task as stored now."""
        return await self.db(store.get_task, task_id)

    async def move(
        self, task: Task, event: TaskEvent, entry: str | None = None, **values: Any
    ) -> Task | None:
        """Move `task` from the state it was read in by `event`, its history saying `entry` (None if
        it moved meanwhile)."""
        return await self.db(store.move_task, task.id, task.state, event, self.clock_ms(), entry, **values)

    async def update(self, task: Task, **values: Any) -> Task | None:
        """Write fields of `task` other than its state."""
        return await self.db(store.update_task, task.id, self.clock_ms(), **values)

    async def note(self, task: Task, detail: str | None) -> bool:
        """Say what is going on with `task` now (kept in its history when it changes)."""
        return await self.db(store.note, task.id, self.clock_ms(), detail)

    def pool_host(self) -> PluginHost:
        """The plugin host of this process, or TasksUnavailableError."""
        if self.host is None:
            raise TasksUnavailableError("this process hosts no pools (it does not run the connectors role)")
        return self.host

    async def pool_call(
        self, pool: str, fn: Callable[[ComputePlugin], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        """Call one of this node's pools (under the host's timeout, errors as ConnectorError)."""
        return await self.pool_host().call(pool, fn, timeout_s)

    def task_dir(self, task_id: str) -> Path:
        """Where a task's kept outputs and log live on this node."""
        return self.data_dir / "tasks" / task_id
