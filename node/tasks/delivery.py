"""Delivery on one of this node's pools (tasks of kind `own` and `sold`): the actions of the task
machine's states from `ordered` to `stopping`, each idempotent and each ending in a stored move.

    ordered       → provision (stored first, then acted on)
    provisioning  find the task's instance by its name or create it; then the pool's own count holds
                  the units, so the order's (or sale's) reservation is released after a fresh
                  snapshot of the pool                           → provisioned | provision_failed
    deploying     deploy the program (once), start it (once)     → started | deploy_failed | how it ended
    running       ask the pool how the run goes                  → how it ended (lost when it is gone)
    stopping      stop the run (or find there was none)          → how it ended | stopped

A full pool (`NoCapacity`) or an unreachable one is retried for `provision_retry_s`, then the
task fails `provision_failed` (its order is then cancelled and its hold voided: nothing charged).
An unreachable pool while the task runs is said in the task's detail and asked again; the task is
not given up.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from connectors.contract import Instance, InstanceSpec, Program
from connectors.errors import ConnectorError, InvalidRequest, NoCapacity, NotFound
from connectors.frameworks import Image
from node.migration import store as migration_store
from node.tasks.core import Tasks, instance_name
from node.tasks.machine import TaskEvent, event_for_instance
from node.tasks.metering import run_limit_s
from node.tasks.records import Task
from node.tasks.spec import parse_task_spec
from node.trading import reservations
from node.trading.records import order_reservation, sale_reservation

log = logging.getLogger("cpnode.tasks")
SEEN_EVERY_MS = 1000  # how often a running task's last sighting is written
# Errors that say the pool could not answer now (not that the request was wrong).
PERMANENT = (InvalidRequest, NotFound)


def image_json(image: Image | None) -> str | None:
    """How a task stores the image it runs (None for a fixed program)."""
    if image is None:
        return None
    return json.dumps({"framework": image.framework, "version": image.version, "reference": image.reference})


def program_of(task: Task) -> Program:
    """The program a task runs on its pool: its spec's, with its image, and a time limit never beyond
    the hours bought."""
    spec = parse_task_spec(task.spec_data())
    image = None
    if task.image is not None:
        data = json.loads(task.image)
        image = Image(data["framework"], data["version"], "", data["reference"], "")
    program = spec.to_program(image)
    return program.model_copy(update={"max_duration_s": run_limit_s(spec.max_duration_s, task.hours or 1)})


def run_fields(instance: Instance) -> dict[str, Any]:
    """What a task stores of its instance's latest run."""
    return {
        "started_ms": instance.started_ms,
        "ended_ms": instance.ended_ms,
        "exit_code": instance.exit_code,
        "end_reason": instance.reason,
    }


class Delivery:
    """The pool side of a task: provision, deploy, follow, stop."""

    def __init__(self, tasks: Tasks) -> None:
        self.tasks = tasks

    def reservation(self, task: Task) -> str | None:
        """The capacity reservation that held the task's units until its instance existed."""
        if task.order_id is None:
            return None
        if task.kind == "sold":
            assert task.partner is not None
            return sale_reservation(task.partner, task.order_id)
        return order_reservation(task.order_id)

    async def find_instance(self, task: Task) -> Instance | None:
        """The task's instance on its pool (by id, or by name when the id was never stored)."""
        t = self.tasks
        assert task.pool is not None
        if task.instance_id is not None:
            try:
                return await t.pool_call(task.pool, lambda p: p.get_instance(str(task.instance_id)))
            except NotFound:
                return None
        name = instance_name(task.id)
        found = await t.pool_call(task.pool, lambda p: p.list_instances())
        return next((i for i in found if i.name == name and i.state != "deleted"), None)

    async def on_ordered(self, task: Task) -> bool:
        """Stored first: the task is provisioning (then `on_provisioning` creates the instance)."""
        return await self.tasks.move(task, "provision") is not None

    async def on_provisioning(self, task: Task) -> bool:
        """Create the task's instance (once), then move on."""
        t = self.tasks
        assert task.pool is not None
        assert task.region_id is not None
        assert task.flavor_id is not None
        spec = InstanceSpec(name=instance_name(task.id), region_id=task.region_id, flavor_id=task.flavor_id)
        try:
            instance = await self.find_instance(task)
            if instance is None:
                instance = await t.pool_call(task.pool, lambda p: p.create_instance(spec))
        except PERMANENT as exc:
            return await self._provision_failed(task, exc)
        except ConnectorError as exc:
            if t.clock_ms() - task.updated_ms > t.settings.provision_retry_s * 1000:
                return await self._provision_failed(task, exc)
            what = "full" if isinstance(exc, NoCapacity) else "unreachable"
            await t.note(task, f"pool_{what}: {exc}")
            return False
        await self.hand_over(task)
        return await t.move(task, "provisioned", instance_id=instance.id) is not None

    async def hand_over(self, task: Task) -> None:
        """The pool now counts the instance: refresh its snapshot, then release the reservation that
        held its units until now (in that order, so the units are never counted free in between)."""
        t = self.tasks
        reservation = self.reservation(task)
        if t.host is not None and task.pool is not None:
            await t.host.refresh([task.pool])
        if reservation is not None:
            await t.db(reservations.release_reservation, reservation, t.clock_ms() // 1000)
        await t.buyer.trading.capacity.refresh()

    async def _provision_failed(self, task: Task, exc: ConnectorError) -> bool:
        reason = f"provision_failed: {exc.code}: {exc}"[:500]
        return await self.tasks.move(task, "provision_failed", reason, reason=reason) is not None

    async def on_deploying(self, task: Task) -> bool:
        """Deploy the program and start it, each once; move on as the run says."""
        t = self.tasks
        assert task.pool is not None
        assert task.instance_id is not None
        instance_id = task.instance_id
        try:
            instance = await t.pool_call(task.pool, lambda p: p.get_instance(instance_id))
            fresh = instance.started_ms is None and instance.ended_ms is None
            if instance.state in ("stopped", "failed") and fresh and instance.program is None:
                program = program_of(task)
                instance = await t.pool_call(task.pool, lambda p: p.deploy(instance_id, program))
            if instance.state == "stopped" and fresh:
                instance = await t.pool_call(task.pool, lambda p: p.start_instance(instance_id))
        except PERMANENT as exc:
            reason = f"deploy_failed: {exc.code}: {exc}"[:500]
            return await t.move(task, "deploy_failed", reason, reason=reason) is not None
        except ConnectorError as exc:
            await t.note(task, f"pool_unreachable: {exc}")
            return False
        return await self._follow(task, instance)

    async def on_running(self, task: Task) -> bool:
        """Ask the pool how the run goes; move on when it ended (not while the task migrates: the
        migration stops the source, node.tasks.migrated)."""
        t = self.tasks
        if await t.db(migration_store.moving, task.id):
            return False
        assert task.pool is not None
        assert task.instance_id is not None
        instance_id = task.instance_id
        try:
            instance = await t.pool_call(task.pool, lambda p: p.get_instance(instance_id))
        except NotFound:
            reason = "lost: the pool no longer knows the task's instance"
            return (
                await t.move(task, "lost", reason, reason=reason, seen_running_ms=task.seen_running_ms)
                is not None
            )
        except ConnectorError as exc:
            await t.note(task, f"pool_unreachable: {exc}")
            return False
        return await self._follow(task, instance)

    async def _follow(self, task: Task, instance: Instance) -> bool:
        """Move the task as the pool's report of its run says (False: nothing new)."""
        t = self.tasks
        event = event_for_instance(instance)
        now = t.clock_ms()
        if event is None or (event == "started" and task.state == "running"):
            if task.detail is not None and task.detail.startswith("pool_"):
                await t.note(task, None)
            if instance.state == "running" and now - (task.seen_running_ms or 0) >= SEEN_EVERY_MS:
                await t.update(task, seen_running_ms=now)
            return False
        values: dict[str, Any] = run_fields(instance)
        if event == "started":
            values["observed_started_ms"] = now
            values["seen_running_ms"] = now
        else:
            values["observed_ended_ms"] = now
            if instance.reason is not None and event != "succeeded":
                values["reason"] = (
                    f"{instance.reason}: {instance.detail}"[:500] if instance.detail else instance.reason
                )
        return await self._move_run(task, event, instance, values)

    async def _move_run(
        self, task: Task, event: TaskEvent, instance: Instance, values: dict[str, Any]
    ) -> bool:
        if task.started_ms is not None:
            values["started_ms"] = task.started_ms  # a run that moved pools is metered from its first start
        detail = instance.detail or instance.reason
        return await self.tasks.move(task, event, detail, **values) is not None

    async def on_stopping(self, task: Task) -> bool:
        """Stop the run (idempotent) and move on as it ended; with no run, the task is stopped. A task
        that migrates is stopped where it runs once the migration is over."""
        t = self.tasks
        if await t.db(migration_store.moving, task.id):
            return False
        assert task.pool is not None
        try:
            instance = await self.find_instance(task)
            if instance is None or instance.state == "deleted":
                return await t.move(task, "stopped", "stopped before it ran") is not None
            instance_id = instance.id
            if task.instance_id is None:
                await self.hand_over(task)
                await t.update(task, instance_id=instance_id)
            instance = await t.pool_call(task.pool, lambda p: p.stop_instance(instance_id))
        except ConnectorError as exc:
            await t.note(task, f"pool_unreachable: {exc}")
            return False
        event = event_for_instance(instance)
        if event in (None, "started"):
            if instance.state in ("starting", "running"):
                return False  # the pool stops it; ask again
            return await t.move(task, "stopped", "stopped before it ran", **run_fields(instance)) is not None
        values = {**run_fields(instance), "observed_ended_ms": t.clock_ms()}
        return await self._move_run(task, event, instance, values)
