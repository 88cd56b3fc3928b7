"""Services tables (migrations node_0015, node_0018): services, their replicas and the replicas'
shared health, and their rows as records."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from node.services.records import Replica, Service
from node.trading.tables import row_values

_md = sa.MetaData()
services_t = sa.Table(
    "services",
    _md,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("consumer", sa.String(63)),
    sa.Column("spec", sa.Text),
    sa.Column("replicas", sa.Integer),
    sa.Column("max_replicas", sa.Integer),
    sa.Column("scale_in_flight", sa.Float),
    sa.Column("scale_window_s", sa.Float),
    sa.Column("health_path", sa.String(200)),
    sa.Column("created_ms", sa.BigInteger),
    sa.Column("updated_ms", sa.BigInteger),
)
replicas_t = sa.Table(
    "service_replicas",
    _md,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("service", sa.String(63)),
    sa.Column("weight", sa.Integer),
    sa.Column("created_ms", sa.BigInteger),
)
health_t = sa.Table(
    "service_health",
    _md,
    sa.Column("replica", sa.String(100), primary_key=True),
    sa.Column("service", sa.String(63)),
    sa.Column("healthy", sa.Boolean),
    sa.Column("problem", sa.Text),
    sa.Column("endpoint", sa.String(300)),
    sa.Column("site", sa.String(200)),
    sa.Column("observed_ms", sa.BigInteger),
    sa.Column("observer", sa.String(100)),
)

_SERVICE_FIELDS = tuple(f.name for f in fields(Service))
_REPLICA_FIELDS = tuple(f.name for f in fields(Replica))


def service_from_row(row: Any) -> Service:
    """A service from a `services` row."""
    return Service(**row_values(row, _SERVICE_FIELDS))


def replica_from_row(row: Any) -> Replica:
    """A replica from a `service_replicas` row."""
    return Replica(**row_values(row, _REPLICA_FIELDS))
