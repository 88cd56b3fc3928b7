"""Migration tables (migrations node_0009, node_0010): migrations, the history of their transitions,
and the migrations partners bring to this node's pools (`inbound_migrations`)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from node.migration.machine import STATES
from node.migration.records import Migration

_md = sa.MetaData()
_BIG, _TEXT, _NAME = sa.BigInteger, sa.Text, sa.String(100)
JSON_FIELDS = ("path", "plan", "checkpoint", "progress", "undo")
migrations_t = sa.Table(
    "migrations",
    _md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(32)),
    *(
        sa.Column(name, _NAME)
        for name in (
            "source_pool",
            "source_instance",
            "task_id",
            "destination_pool",
            "destination_region",
            "destination_flavor",
            "destination_instance",
            "network",
            "source_site",
            "destination_site",
            "path_id",
            "express_job",
            "partner",
            "order_id",
        )
    ),
    *(sa.Column(name, _TEXT) for name in (*JSON_FIELDS, "reason", "last_error")),
    *(
        sa.Column(name, _BIG)
        for name in (
            "bandwidth_mbps",
            "path_reprovisions",
            "source_stopped_ms",
            "transfer_attempts",
            "transfer_resumes",
            "committed_ms",
            "destination_started_ms",
            "attempts",
            "version",
            "created_ms",
            "updated_ms",
        )
    ),
)
migration_events_t = sa.Table(
    "migration_events",
    _md,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("migration_id", sa.String(64)),
    sa.Column("at_ms", _BIG),
    sa.Column("from_state", sa.String(32)),
    sa.Column("event", sa.String(32)),
    sa.Column("to_state", sa.String(32)),
    sa.Column("detail", _TEXT),
)
inbound_migrations_t = sa.Table(
    "inbound_migrations",
    _md,
    sa.Column("partner", _NAME, primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("trade_id", _NAME),
    sa.Column("state", sa.String(32)),
    sa.Column("instance_id", _NAME),
    sa.Column("files", _TEXT),
    sa.Column("not_before", _BIG),
    sa.Column("expires", _BIG),
    sa.Column("created_ms", _BIG),
    sa.Column("updated_ms", _BIG),
)
_FIELDS = tuple(f.name for f in fields(Migration))


def encode(values: dict[str, Any]) -> dict[str, Any]:
    """Column values for record values: JSON fields as text."""
    return {
        k: json.dumps(v, sort_keys=True) if k in JSON_FIELDS and v is not None else v
        for k, v in values.items()
    }


def migration_from_row(row: Any) -> Migration:
    """A migration from a `migrations` row (ValueError for a state the machine lacks)."""
    m = row._mapping
    values = {name: m[name] for name in _FIELDS}
    if values["state"] not in STATES:
        raise ValueError(f"migration {values['id']} has unknown state {values['state']!r}")
    for name in JSON_FIELDS:
        values[name] = None if values[name] is None else json.loads(values[name])
    values["undo"] = values["undo"] or []
    return Migration(**values)
