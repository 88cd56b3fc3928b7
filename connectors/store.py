"""Persisting plugins and snapshots (the SQL edge). Every health transition is written before it is acted on.

Remote plugins' registrations survive a node restart (they come back `starting` and go `online`
with their next heartbeat). Snapshots let any replica build offers from the latest data sources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.contract import DataSource

_META = sa.MetaData()
PLUGINS = sa.Table(
    "connector_plugins",
    _META,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(16)),
    sa.Column("source", sa.String(16)),
    sa.Column("target", sa.String(500)),
    sa.Column("options_json", sa.Text),
    sa.Column("version", sa.String(200)),
    sa.Column("state", sa.String(16)),
    sa.Column("call_token", sa.String(200)),
    sa.Column("heartbeat_token_sha256", sa.String(64)),
    sa.Column("registered_ms", sa.BigInteger),
    sa.Column("state_changed_ms", sa.BigInteger),
    sa.Column("last_seen_ms", sa.BigInteger),
    sa.Column("last_error", sa.Text),
)
SNAPSHOTS = sa.Table(
    "connector_snapshots",
    _META,
    sa.Column("plugin", sa.String(63), primary_key=True),
    sa.Column("fetched_ms", sa.BigInteger),
    sa.Column("duration_ms", sa.BigInteger),
    sa.Column("data_json", sa.Text),
)


@dataclass(frozen=True)
class PluginRow:
    """One registered plugin as stored."""

    name: str
    kind: str
    source: str
    target: str
    options: Mapping[str, Any]
    version: str
    state: str
    call_token: str
    heartbeat_token_sha256: str
    registered_ms: int
    state_changed_ms: int
    last_seen_ms: int
    last_error: str


class PluginStore:
    """Reads and writes `connector_plugins` and `connector_snapshots` on a node's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _write(self) -> Any:
        return self.engine.connect().execution_options(cpnode_write=True)

    def save(self, row: PluginRow) -> None:
        """Insert or replace a plugin's registration."""
        values = {**row.__dict__, "options_json": json.dumps(dict(row.options), sort_keys=True)}
        del values["options"]
        with self._write() as conn, conn.begin():
            conn.execute(sa.delete(SNAPSHOTS).where(SNAPSHOTS.c.plugin == row.name))
            conn.execute(sa.delete(PLUGINS).where(PLUGINS.c.name == row.name))
            conn.execute(sa.insert(PLUGINS).values(**values))

    def set_state(self, name: str, state: str, now_ms: int, last_error: str = "") -> None:
        """Record a health transition (offers read only snapshots of `online` plugins)."""
        with self._write() as conn, conn.begin():
            conn.execute(
                sa.update(PLUGINS)
                .where(PLUGINS.c.name == name)
                .values(state=state, state_changed_ms=now_ms, last_error=last_error[:2000])
            )

    def touch(self, seen: Mapping[str, int]) -> None:
        """Record last-heartbeat times in one transaction (batched: heartbeats are frequent)."""
        if not seen:
            return
        with self._write() as conn, conn.begin():
            for name, when in seen.items():
                conn.execute(sa.update(PLUGINS).where(PLUGINS.c.name == name).values(last_seen_ms=when))

    def delete(self, name: str) -> None:
        """Forget a plugin and its snapshot."""
        with self._write() as conn, conn.begin():
            conn.execute(sa.delete(SNAPSHOTS).where(SNAPSHOTS.c.plugin == name))
            conn.execute(sa.delete(PLUGINS).where(PLUGINS.c.name == name))

    def load(self) -> list[PluginRow]:
        """Every registered plugin."""
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(PLUGINS).order_by(PLUGINS.c.name)).mappings().all()
        return [
            PluginRow(
                **{k: v for k, v in row.items() if k != "options_json"},
                options=json.loads(row["options_json"]),
            )
            for row in rows
        ]

    def save_snapshot(self, name: str, data: DataSource, fetched_ms: int, duration_ms: int) -> None:
        """Store a plugin's latest data source."""
        with self._write() as conn, conn.begin():
            conn.execute(sa.delete(SNAPSHOTS).where(SNAPSHOTS.c.plugin == name))
            conn.execute(
                sa.insert(SNAPSHOTS).values(
                    plugin=name,
                    fetched_ms=fetched_ms,
                    duration_ms=duration_ms,
                    data_json=data.model_dump_json(),
                )
            )

    def online_snapshots(self) -> dict[str, tuple[DataSource, int]]:
        """The latest snapshot of every `online` plugin, with when it was fetched (ms)."""
        query = (
            sa.select(SNAPSHOTS.c.plugin, SNAPSHOTS.c.data_json, SNAPSHOTS.c.fetched_ms)
            .join(PLUGINS, PLUGINS.c.name == SNAPSHOTS.c.plugin)
            .where(PLUGINS.c.state == "online")
        )
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        return {row[0]: (DataSource.model_validate_json(row[1]), int(row[2])) for row in rows}
