"""Tasks tables (migrations node_0005, node_0007): tasks and their history, and their rows as records."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from node.tasks.machine import STATES
from node.tasks.records import KINDS, Task, TaskEntry
from node.trading.tables import row_values

_md = sa.MetaData()
_BIG, _TEXT = sa.BigInteger, sa.Text
tasks_t = sa.Table(
    "tasks",
    _md,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(8)),
    sa.Column("consumer", sa.String(140)),  # a sold task's: `consumer@buyer` (node_0011)
    sa.Column("partner", sa.String(63)),
    sa.Column("name", sa.String(63)),
    sa.Column("spec", _TEXT),
    sa.Column("state", sa.String(20)),
    sa.Column("outcome", sa.String(20)),
    sa.Column("reason", _TEXT),
    sa.Column("detail", _TEXT),
    sa.Column("order_id", sa.String(100)),
    sa.Column("order_round", _BIG),
    sa.Column("offer_id", sa.String(200)),
    sa.Column("source", sa.String(80)),
    sa.Column("pool", sa.String(200)),
    sa.Column("region_id", sa.String(63)),
    sa.Column("flavor_id", sa.String(63)),
    *(sa.Column(name, _BIG) for name in ("units", "hours", "price_per_unit_hour")),
    sa.Column("currency", sa.String(16)),
    sa.Column("image", _TEXT),
    sa.Column("instance_id", sa.String(100)),
    *(sa.Column(name, _BIG) for name in ("started_ms", "ended_ms", "exit_code")),
    sa.Column("end_reason", sa.String(32)),
    *(
        sa.Column(name, _BIG)
        for name in ("seen_running_ms", "observed_started_ms", "observed_ended_ms", "used_s", "amount")
    ),
    sa.Column("usage_record", sa.LargeBinary),
    sa.Column("outputs", _TEXT),
    *(sa.Column(name, _BIG) for name in ("created_ms", "updated_ms")),
)
task_events_t = sa.Table(
    "task_events",
    _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(100)),
    sa.Column("ts_ms", _BIG),
    sa.Column("state", sa.String(20)),
    sa.Column("event", sa.String(20)),
    sa.Column("detail", _TEXT),
)

_TASK_FIELDS = tuple(f.name for f in fields(Task))
_ENTRY_FIELDS = tuple(f.name for f in fields(TaskEntry))


def task_from_row(row: Any) -> Task:
    """A task from a `tasks` row (ValueError for a state or kind the code does not know)."""
    values = row_values(row, _TASK_FIELDS)
    if values["state"] not in STATES or values["kind"] not in KINDS:
        raise ValueError(
            f"task {values['id']} has unknown state or kind {values['state']!r}/{values['kind']!r}"
        )
    return Task(**values)


def entry_from_row(row: Any) -> TaskEntry:
    """A history entry from a `task_events` row."""
    return TaskEntry(**row_values(row, _ENTRY_FIELDS))
