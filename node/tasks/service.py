"""What the tasks API does, apart from HTTP: submit, read, stop, and read a task's log and outputs.

Submitting checks the whole spec before anything is stored (a bad spec is a 422 naming its field
and changes nothing): a task runs one instance (`resources.units` 1, no `split`), a framework must
be one the image catalogue knows, and the consumer must exist. A task id may be given (`NODE.RANDOM`
of this node): submitting the same spec under it again answers the stored task, another spec 409.

A consumer sees only its own tasks: another's answers 404 exactly as a missing one. Stopping is
stored at once (the driver stops the run): a task not yet running is stopped, a running one is
stopping; stopping it again changes nothing, even once it is released; stopping a task whose run
ended otherwise is a 409.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import ledger
from connectors.contract import MAX_LOG_CHUNK_BYTES, LogChunk
from connectors.errors import ConnectorError
from connectors.frameworks import NoImage, resolve
from node.http.auth import Principal
from node.tasks import earlier_log, keep, store
from node.tasks.core import Tasks
from node.tasks.errors import PartnerTaskError, TaskStateError, TasksUnavailableError, UnknownTaskError
from node.tasks.machine import ENDED
from node.tasks.records import Task, TaskEntry
from node.tasks.remote import Remote
from node.tasks.spec import TaskSpec, TaskSpecError, parse_task_spec
from node.trading import rules
from node.trading.errors import OrderRequestError

MAX_LISTED = 500
SLICE = 4 << 20  # bytes of an output file read (or asked of a partner) at once


def check_runnable(spec: TaskSpec) -> None:
    """Refuse (TaskSpecError) a spec no pool can deliver as one task."""
    if spec.demand is not None:
        if spec.demand.split:
            raise TaskSpecError("resources.split", "a task runs on one offer; it cannot be split")
        if spec.demand.units != 1:
            raise TaskSpecError(
                "resources.units", "a task runs one instance: ask for 1 unit of a flavor large enough"
            )
    if spec.offer is not None and spec.offer.units != 1:
        raise TaskSpecError("resources.units", "a task runs one instance: order 1 unit of the offer")
    if spec.framework is not None:
        found = resolve(spec.framework, "cpu")
        if isinstance(found, NoImage) and found.reason in ("bad_spec", "unknown_framework"):
            raise TaskSpecError("program.framework", found.message)


def spec_document(data: Any) -> tuple[TaskSpec, str]:
    """The checked spec and the canonical JSON it is stored as."""
    spec = parse_task_spec(data)
    check_runnable(spec)
    return spec, json.dumps(data, sort_keys=True, separators=(",", ":"))


class TaskService:
    """The tasks API's operations for one node."""

    def __init__(self, tasks: Tasks, remote: Remote, nudge: Callable[[str], None]) -> None:
        self.tasks = tasks
        self.remote = remote
        self.nudge = nudge

    async def submit(self, consumer: str, data: Any, task_id: str | None) -> tuple[bool, Task]:
        """Store a new task (True) or find the same one again (False)."""
        t = self.tasks
        try:
            rules.check_consumer_id(consumer)
        except OrderRequestError as exc:
            raise TaskSpecError("consumer", str(exc)) from None
        spec, text = spec_document(data)
        try:
            await t.db(ledger.get_account, rules.consumer_account(consumer))
        except ledger.NotFoundError:
            raise UnknownTaskError(
                f"no consumer {consumer!r} (create it first)", code="unknown_consumer"
            ) from None
        task_id = rules.check_trade_id(task_id, t.name) if task_id is not None else rules.new_trade_id(t.name)
        now = t.clock_ms()
        values = {
            "id": task_id,
            "kind": "own",
            "consumer": consumer,
            "name": spec.name,
            "spec": text,
            "order_round": 0,
            "created_ms": now,
            "updated_ms": now,
        }
        created, task = await t.db(store.insert_task, values)
        if not created and (task.spec != text or task.consumer != consumer):
            raise TaskStateError(f"task {task_id} exists with another spec", code="task_id_reused")
        self.nudge(task.id)
        return created, task

    async def get(self, caller: Principal, task_id: str) -> Task:
        """A task the caller may see (UnknownTaskError otherwise, alike for missing and foreign)."""
        task = await self.tasks.get(task_id) if len(task_id) <= 100 else None
        if task is None or not _may_see(caller, task):
            raise UnknownTaskError(f"no task {task_id!r}")
        return task

    async def list_for(self, caller: Principal, consumer: str | None) -> list[Task]:
        """The caller's tasks (the admin's: every task, or one consumer's), newest first."""
        if not caller.is_admin:
            consumer = caller.consumer
        return await self.tasks.db(store.list_tasks, consumer, None, MAX_LISTED)

    async def history(self, task: Task, after_id: int = 0) -> list[TaskEntry]:
        """The task's history after entry `after_id`."""
        return await self.tasks.db(store.entries, task.id, after_id)

    async def stop(self, caller: Principal, task_id: str) -> Task:
        """Stop a task (see the module docstring)."""
        task = await self.get(caller, task_id)
        while task.state not in ("stopping", "stopped"):
            if task.state in ENDED or task.state == "released":
                if task.outcome == "stopped":  # stopped already (a repeated stop): nothing more to do
                    break
                raise TaskStateError(f"task {task.id} is {task.state}; its run is over", code="task_ended")
            moved = await self.tasks.move(task, "stop", "stopped on request")
            task = moved or await self.get(caller, task_id)
        self.nudge(task.id)
        return task

    async def logs(self, task: Task, offset: int, limit: int) -> LogChunk:
        """A slice of the task's whole log: what its program wrote before it migrated (if it did),
        then its current log (`_current_log`), as one file."""
        if offset < 0 or not 0 <= limit <= MAX_LOG_CHUNK_BYTES:
            raise TaskStateError(f"offset must be ≥ 0 and limit 0–{MAX_LOG_CHUNK_BYTES}", code="bad_request")
        return await earlier_log.read_whole(
            earlier_log.earlier_dir(self.tasks, task.id),
            offset,
            limit,
            lambda at, most: self._current_log(task, at, most),
        )

    async def _current_log(self, task: Task, offset: int, limit: int) -> LogChunk:
        """A slice of the current run's log: from its pool while the instance lives, else the kept
        copy; through the partner for a task a partner runs."""
        t = self.tasks
        if task.kind == "remote":
            return await self.remote.logs(task, offset, limit)
        if task.outputs is not None or task.pool is None or task.instance_id is None:
            return keep.read_kept_log(t, task, offset, limit)
        if t.host is None:
            raise TasksUnavailableError(
                "this process hosts no pools; ask a replica that runs the connectors role"
            )
        instance_id, pool = task.instance_id, task.pool
        try:
            chunk = await t.pool_call(pool, lambda p: p.logs(instance_id, offset, limit))
        except ConnectorError:
            fresh = await t.get(task.id)
            if fresh is not None and fresh.outputs is not None:  # kept and deleted meanwhile
                return keep.read_kept_log(t, fresh, offset, limit)
            raise
        if chunk.complete and not task.ended:
            # The pool's run ended, but the task has not taken it in yet: more may follow the
            # state change (nothing more from this run, but say it is not over).
            return chunk.model_copy(update={"complete": False})
        return chunk

    async def output_slices(self, task: Task, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """A kept output file by its path (its listing, and its bytes in slices): read here, or at
        the partner for a task a partner ran; UnknownTaskError when it kept no such file."""
        kept = task.kept_outputs()
        if kept is None:
            raise TaskStateError(
                f"task {task.id} has no kept outputs yet (it is {task.state})", code="outputs_not_ready"
            )
        entry = next((f for f in kept if f.get("path") == path), None)
        if entry is None:
            raise UnknownTaskError(f"task {task.id} kept no output {path!r}", code="unknown_output")
        return entry, self._slices(task, entry)

    async def _slices(self, task: Task, entry: dict[str, Any]) -> AsyncIterator[bytes]:
        size, offset = int(entry["size_bytes"]), 0
        if task.kind != "remote":
            with keep.outputs_dir(self.tasks, task.id).joinpath(entry["path"]).open("rb") as handle:
                while block := handle.read(SLICE):
                    yield block
            return
        while offset < size:
            block = await self.remote.output_slice(task, entry["path"], offset, SLICE)
            if not block:
                raise PartnerTaskError(f"{task.partner} sent no bytes of {entry['path']} at {offset}")
            offset += len(block)
            yield block

    def outputs(self, task: Task) -> dict[str, Any]:
        """The task's kept output files (`complete` False until its run ended and they were kept)."""
        kept = task.kept_outputs()
        return {"task": task.id, "complete": kept is not None, "files": kept or []}


def _may_see(caller: Principal, task: Task) -> bool:
    """Staff see every task; a consumer its own (not sold ones); a partner's consumer (role
    `federated`, `alice@a`) the tasks sold to its home node for it."""
    if caller.is_admin:
        return True
    if caller.role == "federated":
        return task.kind == "sold" and task.consumer == caller.consumer
    return task.kind != "sold" and task.consumer == caller.consumer
