"""A task whose program migrated (node.migration): the task record follows its program.

While a migration of the task is under way the task's delivery leaves the instance alone (the
migration stops the source; that is no end of the run). When the cutover commits, the migration
calls `follow` (its cutover hook), which may run more than once:

- to another pool of this node: the task's pool, region, flavor and instance become the
  destination's; its order stays, and its run is metered from its first start to its end on the
  destination (the time in between included: the units stayed the consumer's);
- to a partner's pool: the run on this node's pool is metered up to the cutover and its order
  settled for that; the task then becomes a `remote` task of the partner's trade, followed,
  metered and settled from the partner's signed usage record like any task a partner delivers
  (logs, outputs and stop go through the partner).

Before the task's record follows, the source instance's log is copied here (node.tasks.earlier_log):
the task's log then reads whole, from its first start, wherever it runs now.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from node.migration.records import Migration
from node.money import format_money
from node.tasks import earlier_log
from node.tasks.core import Tasks
from node.tasks.finish import Finish, metered
from node.tasks.records import Task

log = logging.getLogger("cpnode.tasks")


def source_run(task: Task, committed_ms: int) -> Task:
    """The task as if its run on this node had ended at the cutover (for metering it)."""
    return replace(task, ended_ms=committed_ms, end_reason="migrated")


async def follow(tasks: Tasks, finish: Finish, m: Migration) -> None:
    """Make the migrated task's record follow its program (see the module docstring)."""
    if m.task_id is None or m.committed_ms is None:
        return
    task = await tasks.get(m.task_id)
    if task is None or task.kind != "own":
        return  # no task, or already followed
    if task.instance_id == m.source_instance:  # its log so far, before the cutover deletes the source
        kept = await earlier_log.keep_source_log(
            tasks, task.id, m.id, m.committed_ms, m.source_pool, m.source_instance
        )
        if not kept:
            await tasks.note(task, f"its log before {m.id} was not kept: {m.source_instance} is gone")
    if m.partner is None:
        if task.instance_id != m.destination_instance:
            await tasks.update(
                task,
                pool=m.destination_pool,
                region_id=m.destination_region,
                flavor_id=m.destination_flavor,
                instance_id=m.destination_instance,
            )
            await tasks.note(task, f"migrated to {m.destination_instance} on {m.destination_pool} ({m.id})")
        return
    assert m.order_id is not None
    used_s, amount = metered(source_run(task, m.committed_ms))
    await finish.settle(task, used_s)
    order = await tasks.buyer.get(m.order_id)
    await tasks.update(
        task,
        kind="remote",
        partner=m.partner,
        order_id=order.id,
        offer_id=order.offer_id,
        source=order.source,
        pool=None,
        instance_id=None,
        units=order.units,
        hours=order.hours,
        price_per_unit_hour=order.price_per_unit_hour,
        started_ms=None,
        observed_started_ms=m.committed_ms,
        seen_running_ms=m.committed_ms,
    )
    await tasks.note(
        task,
        f"migrated to {m.partner} (order {order.id}, {m.id}); the run here was settled for {used_s} s, "
        f"{format_money(amount, tasks.currency)}",
    )
    log.info("task %s follows its program to %s (order %s)", task.id, m.partner, order.id)
