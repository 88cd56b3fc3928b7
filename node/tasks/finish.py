"""What happens once a task's run is over (succeeded, failed or stopped), before it is released:
each step idempotent, so a restart in the middle finishes it.

1. keep the run's outputs and log on this node (node.tasks.keep);
2. meter the run (node.tasks.metering) and settle the order for it; an order whose program never
   ran (provisioning failed, an input failed its hash, stopped first) is cancelled: its hold voided,
   nothing charged. Orders placed by a task stopped while it ordered are cancelled too;
3. delete the instance, so its pool counts the units free again (and tasks waiting for capacity
   are woken);
4. release the task.
"""

from __future__ import annotations

import json
import logging

from connectors.errors import ConnectorError, NotFound
from node.market.ordering import MAX_ATTEMPTS, order_id_for
from node.tasks import keep
from node.tasks.core import Tasks
from node.tasks.delivery import Delivery
from node.tasks.metering import Run, run_limit_s, used_seconds
from node.tasks.records import Task
from node.tasks.spec import parse_task_spec
from node.trading import rules
from node.trading import store as trading_store
from node.trading.machine import ORDER_FINAL
from node.trading.records import Order

log = logging.getLogger("cpnode.tasks")


def metered(task: Task) -> tuple[int, int]:
    """(seconds used, amount) of a task's run as its record says."""
    spec = parse_task_spec(task.spec_data())
    hours = task.hours or 1
    run = Run(task.started_ms, task.ended_ms, task.end_reason, task.seen_running_ms)
    used_s = used_seconds(run, run_limit_s(spec.max_duration_s, hours))
    return used_s, rules.usage_amount(task.units or 1, hours, task.price_per_unit_hour or 0, used_s)


class Finish:
    """The action of the ended states."""

    def __init__(self, tasks: Tasks, delivery: Delivery) -> None:
        self.tasks = tasks
        self.delivery = delivery

    async def on_ended(self, task: Task) -> bool:
        """Keep, settle, delete, release (see the module docstring)."""
        t = self.tasks
        if task.pool is not None and task.outputs is None:
            if not await self._keep(task):
                return False
            task = await t.get(task.id) or task
        used_s, amount = metered(task)
        if task.kind == "own":
            await self.settle(task, used_s)
        if not await self._delete(task):
            return False
        return await t.move(task, "release", used_s=used_s, amount=amount) is not None

    async def _keep(self, task: Task) -> bool:
        """Keep outputs and log (nothing to keep when no instance was made); False to try again."""
        t = self.tasks
        try:
            instance = await self.delivery.find_instance(task)
            if instance is None:
                await t.update(task, outputs="[]")
                return True
            if task.instance_id is None:
                task = await t.update(task, instance_id=instance.id) or task
            kept, why = await keep.keep_outputs(t, task)
            await keep.keep_log(t, task)
        except (ConnectorError, OSError) as exc:
            await t.note(task, f"keeping_outputs: {exc}")
            return False
        if why is not None:
            await t.note(task, why)
        await t.update(task, outputs=json.dumps(kept))
        return True

    async def _delete(self, task: Task) -> bool:
        """Delete the task's instance (if any) and tell who waits for capacity; False to try again."""
        t = self.tasks
        if task.pool is None or task.instance_id is None:
            return True
        instance_id = task.instance_id
        try:
            await t.pool_call(task.pool, lambda p: p.delete_instance(instance_id))
        except NotFound:
            pass
        except ConnectorError as exc:
            await t.note(task, f"pool_unreachable: {exc}")
            return False
        if t.host is not None:
            await t.host.refresh([task.pool])
        t.capacity_freed()
        return True

    async def settle(self, task: Task, used_s: int) -> None:
        """Settle the task's order for what ran, or cancel it when nothing did; also cancel orders
        a task stopped while ordering may have placed."""
        for order in await self.orders(task):
            if order.state in ORDER_FINAL:
                continue
            buyer = self.tasks.buyer
            if order.id == task.order_id and task.started_ms is not None:
                if order.state == "accepted":
                    await buyer.settle_metered(order.id, used_s)
                else:
                    await buyer.drive(order)
            elif order.state == "accepted":
                await buyer.cancel(order.id)
            else:
                await buyer.drive(order)

    async def orders(self, task: Task) -> list[Order]:
        """The task's order, and any other order its ordering rounds may have placed."""
        t = self.tasks
        ids = [] if task.order_id is None else [task.order_id]
        if task.consumer is not None and task.kind != "sold":
            for round_ in range(task.order_round + 1):
                for n in range(MAX_ATTEMPTS):
                    ids.append(order_id_for(t.name, task.consumer, f"{task.id}/{round_}", n))
        found = []
        for order_id in dict.fromkeys(ids):
            order = await t.db(trading_store.get_order, order_id)
            if order is not None:
                found.append(order)
        return found
