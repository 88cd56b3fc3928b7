"""The records of tasks, with no I/O: a task as stored (node.tasks.tables maps it to rows), one
entry of its history, and what the API shows of each.

A task is one of three kinds:

    own     a consumer's task delivered on one of this node's pools (an order on an own offer)
    remote  a consumer's task delivered by a partner on its pool (an order on a partner's offer);
            this node follows it over the peer API and proxies its logs and outputs
    sold    a partner's task delivered here on one of this node's pools (a sale to that partner)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from node.tasks.machine import ENDED, TaskState

TaskKind = Literal["own", "remote", "sold"]
KINDS: tuple[TaskKind, ...] = ("own", "remote", "sold")
# What the API leaves out of a task: the spec is shown parsed, documents by digest.
_HIDDEN = ("spec", "usage_record", "outputs")


@dataclass(frozen=True)
class Task:
    """A row of `tasks`."""

    id: str
    kind: TaskKind
    consumer: str | None
    partner: str | None
    name: str | None
    spec: str
    state: TaskState
    outcome: str | None  # how the run ended (succeeded, failed, stopped), kept after release
    reason: str | None
    detail: str | None
    order_id: str | None
    order_round: int
    offer_id: str | None
    source: str | None
    pool: str | None
    region_id: str | None
    flavor_id: str | None
    units: int | None
    hours: int | None
    price_per_unit_hour: int | None
    currency: str | None
    image: str | None
    instance_id: str | None
    started_ms: int | None
    ended_ms: int | None
    exit_code: int | None
    end_reason: str | None
    seen_running_ms: int | None
    observed_started_ms: int | None
    observed_ended_ms: int | None
    used_s: int | None
    amount: int | None
    usage_record: bytes | None
    outputs: str | None
    created_ms: int
    updated_ms: int

    @property
    def ended(self) -> bool:
        """Whether the task's run is over (succeeded, failed or stopped, released or not)."""
        return self.state in ENDED or self.state == "released"

    def spec_data(self) -> dict[str, Any]:
        """The task document as submitted (JSON)."""
        data: dict[str, Any] = json.loads(self.spec)
        return data

    def kept_outputs(self) -> list[dict[str, Any]] | None:
        """The files kept when the run ended (path, size_bytes, sha256), None until they are."""
        return None if self.outputs is None else list(json.loads(self.outputs))

    def view(self) -> dict[str, Any]:
        """What the API shows of a task."""
        shown = {k: v for k, v in asdict(self).items() if k not in _HIDDEN}
        shown["spec"] = self.spec_data()
        shown["outputs_kept"] = self.outputs is not None
        return shown


@dataclass(frozen=True)
class TaskEntry:
    """One entry of a task's history: the state it entered, by which event, when, and why."""

    id: int
    task_id: str
    ts_ms: int
    state: str
    event: str
    detail: str | None

    def view(self) -> dict[str, Any]:
        """What the API (and the event stream) shows of an entry."""
        return asdict(self)
