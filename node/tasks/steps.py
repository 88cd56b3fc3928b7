"""The action of each task state, by kind: one table, so every state that is not final has exactly
one action for each kind of task (a table test checks it). Each action runs after its state is
stored, is idempotent, and says whether it moved the task on (False: nothing new, ask again later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from node.tasks import store
from node.tasks.core import Tasks
from node.tasks.delivery import Delivery, image_json
from node.tasks.finish import Finish
from node.tasks.machine import TaskState
from node.tasks.ordering import WAITING, Busy, Ordering, Placed, Refused, flavor_of
from node.tasks.records import Task, TaskKind
from node.tasks.remote import Remote
from node.tasks.sold import SoldTasks

log = logging.getLogger("cpnode.tasks")
Action = Callable[[Task], Awaitable[bool]]
PLACE_TIMEOUT = "place_timeout"  # the code of a placement cut off by its time bound
PLACE_FAILED = "place_failed"  # the reason of a task whose placements were cut off `place_attempts` times
BUSY_RETRY_S = 2.0  # how often a task waiting for capacity looks again when none was freed here


class Late(Exception):
    """A placement ran past its time bound (it was cut off; running it again finds what it placed)."""


class TaskSteps:
    """What each state does for each kind of task."""

    def __init__(self, tasks: Tasks, nudge: Callable[[str], None] = lambda _id: None) -> None:
        self.tasks = tasks
        self.ordering = Ordering(tasks)
        self.delivery = Delivery(tasks)
        self.finish = Finish(tasks, self.delivery)
        self.remote = Remote(tasks)
        self.sold = SoldTasks(tasks, self.delivery, self.finish, nudge)
        # One placement at a time: each sees the free units the one before left (fewer refusals),
        # each within `place_timeout_s`, so one that hangs (a partner that does not answer) holds up
        # the others no longer than that; it is tried again later and finds what it had placed,
        # after a wait that doubles with each cut-off (`_retry_at`, by task id), `place_attempts`
        # times at most: then the task fails and its orders are called off.
        self._ordering = asyncio.Lock()
        self._retry_at: dict[str, float] = {}
        # When a placement last found every fitting offer busy (capacity epoch, monotonic time):
        # tasks waiting for capacity look again once some is freed here, or after BUSY_RETRY_S.
        self._busy: tuple[int, float] | None = None
        d, f = self.delivery, self.finish
        pool: dict[TaskState, Action] = {
            "ordered": d.on_ordered,
            "provisioning": d.on_provisioning,
            "deploying": d.on_deploying,
            "running": d.on_running,
            "stopping": d.on_stopping,
            "succeeded": f.on_ended,
            "failed": f.on_ended,
            "stopped": f.on_ended,
        }
        following = self.remote.on_following
        self.actions: dict[TaskKind, dict[TaskState, Action]] = {
            "own": {"submitted": self.on_submitted, **pool},
            "remote": {
                "submitted": self.on_submitted,  # never stored so: an own task becomes remote once ordered
                **dict.fromkeys(("ordered", "provisioning", "deploying", "running", "stopping"), following),
                **dict.fromkeys(("succeeded", "failed", "stopped"), self.remote.on_ended),
            },
            "sold": {
                "submitted": self._never_submitted,
                **pool,
                **{
                    state: self.sold.while_sold(pool[state])
                    for state in ("provisioning", "deploying", "running")
                },
                "ordered": self.sold.on_ordered,
                **dict.fromkeys(("succeeded", "failed", "stopped"), self.sold.on_ended),
            },
        }

    def idle_s(self, task: Task) -> float:
        """How long the driver may wait before it runs the action of `task` again when nothing
        changed (a nudge wakes it sooner): tasks waiting for capacity are woken when it is freed,
        a placement cut off by its bound is tried again when its back-off ends."""
        retry_at = self._retry_at.get(task.id)
        if retry_at is not None:
            return max(0.0, retry_at - time.monotonic())
        if task.state == "submitted" and (task.detail or "").startswith(WAITING):
            return BUSY_RETRY_S
        if task.kind == "remote":
            return self.tasks.settings.partner_poll_s
        return self.tasks.settings.poll_s

    async def step(self, task: Task) -> bool:
        """Run the action of the task's state (True if it moved on or changed)."""
        if task.state != "submitted":  # ordered or stopped: no placement left to back off
            self._retry_at.pop(task.id, None)
        action = self.actions.get(task.kind, {}).get(task.state)
        if action is None:
            return False
        return await action(task)

    async def _never_submitted(self, task: Task) -> bool:  # noqa: ARG002 (an action takes its task)
        """A partner's task is stored `ordered` with its sale; nothing to do in `submitted`."""
        return False

    async def on_submitted(self, task: Task) -> bool:
        """Order the task (see node.tasks.ordering); wait while capacity is busy."""
        t = self.tasks
        waiting = (task.detail or "").startswith(WAITING)
        busy = self._busy
        if (
            waiting
            and busy is not None
            and busy[0] == t.capacity_epoch
            and time.monotonic() - busy[1] < BUSY_RETRY_S
        ):
            return False
        retry_at = self._retry_at.pop(task.id, None)
        if retry_at is not None and time.monotonic() < retry_at:  # woken early: back off still
            self._retry_at[task.id] = retry_at
            return False
        try:
            async with self._ordering:
                placed = await self._place_bounded(task)
        except Late:
            return await self._placement_late(task)
        except Busy as exc:
            self._busy = (t.capacity_epoch, time.monotonic())
            waited_s = (t.clock_ms() - task.created_ms) / 1000
            if waited_s > t.settings.queue_timeout_s:
                reason = f"no_capacity: waited {waited_s:.0f} s for free capacity: {exc}"[:500]
                return await t.move(task, "order_refused", reason, reason=reason) is not None
            if exc.ordered:
                await t.update(task, order_round=task.order_round + 1)
            await t.note(task, f"{WAITING}: {exc}"[:500])
            return False
        except Refused as exc:
            reason = f"{exc.code}: {exc}"[:500]
            return await t.move(task, "order_refused", reason, reason=reason) is not None
        order, offer = placed.order, placed.offer
        region, flavor = flavor_of(offer) if order.partner is None else (None, None)
        moved = await t.move(
            task,
            "order_placed",
            f"order {order.id}" + (f" from {order.partner}" if order.partner else ""),
            detail=None,
            kind="own" if order.partner is None else "remote",
            partner=order.partner,
            order_id=order.id,
            offer_id=order.offer_id,
            source=order.source,
            pool=order.pool if order.partner is None else None,
            region_id=region,
            flavor_id=flavor,
            units=order.units,
            hours=order.hours,
            price_per_unit_hour=order.price_per_unit_hour,
            currency=order.currency,
            image=image_json(placed.image),
        )
        return moved is not None

    async def _place_bounded(self, task: Task) -> Placed:
        """Place the task's order within `place_timeout_s` (from when it holds the lock), or Late."""
        bound = asyncio.timeout(self.tasks.settings.place_timeout_s)
        try:
            async with bound:
                return await self.ordering.place(task)
        except TimeoutError:
            if bound.expired():
                raise Late from None
            raise

    async def _placement_late(self, task: Task) -> bool:
        """A placement ran past `place_timeout_s`: say so; it is tried again after a back-off and
        finds the orders it stored (node.tasks.ordering), so none is left behind without its task.
        The `place_attempts`-th cut-off fails the task instead (`_give_up`)."""
        settings = self.tasks.settings
        limit_s = settings.place_timeout_s
        attempt = await self.tasks.db(store.count_notes, task.id, f"{PLACE_TIMEOUT}:") + 1
        if attempt >= settings.place_attempts:
            return await self._give_up(task, attempt)
        wait_s = min(limit_s, 2.0 ** (attempt - 1))
        log.warning(
            "placing the order of task %s took more than %s s (attempt %d of %d); trying again in %s s",
            task.id,
            limit_s,
            attempt,
            settings.place_attempts,
            wait_s,
        )
        self._retry_at[task.id] = time.monotonic() + wait_s
        await self.tasks.note(
            task,
            f"{PLACE_TIMEOUT}: placing its order took more than {limit_s:g} s"
            f" (attempt {attempt} of {settings.place_attempts}); trying again in {wait_s:g} s",
        )
        return False

    async def _give_up(self, task: Task, attempts: int) -> bool:
        """Fail a task whose placements were cut off `attempts` times: first call off the orders
        they stored (holds voided, trades cancelled), then fail it `place_failed`, so no hold
        outlives its task (a crash between the two calls them off again at the next attempt)."""
        limit_s = self.tasks.settings.place_timeout_s
        reason = (
            f"{PLACE_FAILED}: placing its order took more than {limit_s:g} s, {attempts} times;"
            " the orders it placed were cancelled"
        )
        log.warning("task %s fails: %s", task.id, reason)
        await self.ordering.call_off(task, reason)
        self._retry_at.pop(task.id, None)
        return await self.tasks.move(task, "order_refused", reason, reason=reason) is not None
