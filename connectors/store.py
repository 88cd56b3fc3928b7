"""Persisting plugins and snapshots (the SQL edge): the stored set every replica converges on.

Registrations, health states, last-seen times and the latest data-source snapshot of every plugin
live here, so every replica of the connectors role hosts the same plugins and serves the same
offers. Each health transition is a conditional UPDATE (it applies only from the states the
transition table moves from, and only to the registration's current generation), so replicas that
decide the same thing at once store it once, and a fresher heartbeat always wins over an offline
decision made on an older last-seen.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from connectors.contract import DataSource
from connectors.sqlstore import EngineStore

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
    sa.Column("generation", sa.String(32)),
    sa.Column("reload_code", sa.Boolean),
)
SNAPSHOTS = sa.Table(
    "connector_snapshots",
    _META,
    sa.Column("plugin", sa.String(63), primary_key=True),
    sa.Column("fetched_ms", sa.BigInteger),
    sa.Column("duration_ms", sa.BigInteger),
    sa.Column("data_json", sa.Text),
)
MAX_ERROR_CHARS = 2000


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
    generation: str = ""
    reload_code: bool = False


@dataclass(frozen=True)
class StoredPlugin:
    """A registration with the time of its latest snapshot (None: no snapshot yet), as a replica syncs it."""

    row: PluginRow
    snapshot_ms: int | None
    snapshot_duration_ms: int


def options_json(options: Mapping[str, Any]) -> str:
    """Options as stored (sorted keys), also how two option sets are compared."""
    return json.dumps(dict(options), sort_keys=True)


def _row(values: RowMapping) -> PluginRow:
    fields = {k: v for k, v in values.items() if k in PluginRow.__dataclass_fields__}
    return PluginRow(**fields, options=json.loads(values["options_json"]))


# Built once: heartbeats are the most frequent write, and building the statement per call cost
# more CPU than running it. The digests compare inside the database, not in constant time: a
# timing difference can only reveal how much of a SHA-256 digest matched, which finds no token.
_BEAT = (
    sa.update(PLUGINS)
    .where(
        PLUGINS.c.name == sa.bindparam("beat_name"),
        PLUGINS.c.source == "remote",
        PLUGINS.c.heartbeat_token_sha256 == sa.bindparam("beat_digest"),
    )
    # never backwards, should replicas' clocks differ by a little
    .values(
        last_seen_ms=sa.case(
            (PLUGINS.c.last_seen_ms < sa.bindparam("beat_now_ms"), sa.bindparam("beat_now_ms")),
            else_=PLUGINS.c.last_seen_ms,
        )
    )
    .returning(PLUGINS.c.state, PLUGINS.c.generation)
)


class PluginStore(EngineStore):
    """Reads and writes `connector_plugins` and `connector_snapshots` on a node's engine."""

    # -- registrations ------------------------------------------------------------------------------

    def save(self, row: PluginRow) -> None:
        """Insert or replace a plugin's registration; the old registration's snapshot goes with it."""
        values = asdict(row)
        values["options_json"] = options_json(values.pop("options"))
        # An upsert, not delete + insert: two replicas registering one name at once must not
        # collide on the primary key (the later one simply wins).
        stmt = self._insert(PLUGINS).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[PLUGINS.c.name], set_={k: v for k, v in values.items() if k != "name"}
        )
        with self._write() as conn, conn.begin():
            conn.execute(stmt)
            conn.execute(sa.delete(SNAPSHOTS).where(SNAPSHOTS.c.plugin == row.name))

    def delete(self, name: str) -> bool:
        """Forget a plugin and its snapshot; False if it was not stored."""
        with self._write() as conn, conn.begin():
            conn.execute(sa.delete(SNAPSHOTS).where(SNAPSHOTS.c.plugin == name))
            return conn.execute(sa.delete(PLUGINS).where(PLUGINS.c.name == name)).rowcount > 0

    def load(self) -> list[PluginRow]:
        """Every registered plugin."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(PLUGINS).order_by(PLUGINS.c.name)).mappings().all()
        return [_row(row) for row in rows]

    def get(self, name: str) -> PluginRow | None:
        """One registration, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(PLUGINS).where(PLUGINS.c.name == name)).mappings().first()
        return None if row is None else _row(row)

    def heads(self) -> list[StoredPlugin]:
        """Every registration with its snapshot's time: what one replica's sync round reads (one query)."""
        query = (
            sa.select(PLUGINS, SNAPSHOTS.c.fetched_ms, SNAPSHOTS.c.duration_ms)
            .select_from(PLUGINS.outerjoin(SNAPSHOTS, SNAPSHOTS.c.plugin == PLUGINS.c.name))
            .order_by(PLUGINS.c.name)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            StoredPlugin(
                _row(row),
                None if row["fetched_ms"] is None else int(row["fetched_ms"]),
                int(row["duration_ms"] or 0),
            )
            for row in rows
        ]

    # -- health -------------------------------------------------------------------------------------

    def set_state(
        self,
        name: str,
        generation: str,
        state: str,
        now_ms: int,
        last_error: str,
        from_states: Collection[str],
        last_seen_by_ms: int | None = None,
    ) -> bool:
        """Store a health transition if the plugin is still in one of `from_states` (and, with
        `last_seen_by_ms`, was last seen no later than that); True if it applied."""
        conditions = [
            PLUGINS.c.name == name,
            PLUGINS.c.generation == generation,
            PLUGINS.c.state.in_(list(from_states)),
        ]
        if last_seen_by_ms is not None:
            conditions.append(PLUGINS.c.last_seen_ms <= last_seen_by_ms)
        stmt = (
            sa.update(PLUGINS)
            .where(*conditions)
            .values(state=state, state_changed_ms=now_ms, last_error=last_error[:MAX_ERROR_CHARS])
        )
        with self._write() as conn, conn.begin():
            return conn.execute(stmt).rowcount == 1

    def set_error(self, name: str, generation: str, last_error: str) -> None:
        """Record a plugin's latest failure (a failed probe or refresh that changed no state)."""
        stmt = (
            sa.update(PLUGINS)
            .where(PLUGINS.c.name == name, PLUGINS.c.generation == generation)
            .values(last_error=last_error[:MAX_ERROR_CHARS])
        )
        with self._write() as conn, conn.begin():
            conn.execute(stmt)

    def beat(self, name: str, token_sha256: str, now_ms: int) -> tuple[str, str] | None:
        """Record a remote plugin's heartbeat if the token's digest matches: one UPDATE, returning
        (state, generation); None when no remote plugin of that name has that token."""
        params = {"beat_name": name, "beat_digest": token_sha256, "beat_now_ms": now_ms}
        with self._write() as conn, conn.begin():
            row = conn.execute(_BEAT, params).first()
        return None if row is None else (str(row[0]), str(row[1]))

    def source_of(self, name: str) -> str | None:
        """Where a plugin comes from ("entry_point" or "remote"), or None if not registered."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(PLUGINS.c.source).where(PLUGINS.c.name == name)).scalar()
        return None if value is None else str(value)

    def touch(self, seen: Mapping[str, int]) -> None:
        """Record last-seen times of probed plugins in one transaction."""
        if not seen:
            return
        with self._write() as conn, conn.begin():
            for name, when in seen.items():
                conn.execute(sa.update(PLUGINS).where(PLUGINS.c.name == name).values(last_seen_ms=when))

    # -- snapshots ----------------------------------------------------------------------------------

    def save_snapshot(
        self, name: str, generation: str, data: DataSource, fetched_ms: int, duration_ms: int
    ) -> bool:
        """Store a plugin's latest data source if that registration still stands and nothing newer
        is stored; True if it was stored."""
        select = sa.select(
            PLUGINS.c.name,
            sa.literal(fetched_ms, sa.BigInteger),
            sa.literal(duration_ms, sa.BigInteger),
            sa.literal(data.model_dump_json(), sa.Text),
        ).where(PLUGINS.c.name == name, PLUGINS.c.generation == generation)
        insert = self._insert(SNAPSHOTS).from_select(
            ["plugin", "fetched_ms", "duration_ms", "data_json"], select
        )
        stmt = insert.on_conflict_do_update(
            index_elements=[SNAPSHOTS.c.plugin],
            set_={
                "fetched_ms": insert.excluded.fetched_ms,
                "duration_ms": insert.excluded.duration_ms,
                "data_json": insert.excluded.data_json,
            },
            where=SNAPSHOTS.c.fetched_ms <= insert.excluded.fetched_ms,
        ).returning(SNAPSHOTS.c.plugin)
        with self._write() as conn, conn.begin():
            # RETURNING, not rowcount: drivers need not report rowcount for INSERT ... ON CONFLICT.
            return conn.execute(stmt).first() is not None

    def snapshots(self, names: Collection[str]) -> dict[str, tuple[DataSource, int, int]]:
        """The stored snapshots of `names`: data, fetched (ms) and call duration (ms)."""
        if not names:
            return {}
        query = sa.select(
            SNAPSHOTS.c.plugin, SNAPSHOTS.c.data_json, SNAPSHOTS.c.fetched_ms, SNAPSHOTS.c.duration_ms
        ).where(SNAPSHOTS.c.plugin.in_(list(names)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {row[0]: (DataSource.model_validate_json(row[1]), int(row[2]), int(row[3])) for row in rows}

    def online_snapshots(self) -> dict[str, tuple[DataSource, int]]:
        """The latest snapshot of every `online` plugin, with when it was fetched (ms)."""
        query = (
            sa.select(SNAPSHOTS.c.plugin, SNAPSHOTS.c.data_json, SNAPSHOTS.c.fetched_ms)
            .join(PLUGINS, PLUGINS.c.name == SNAPSHOTS.c.plugin)
            .where(PLUGINS.c.state == "online")
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {row[0]: (DataSource.model_validate_json(row[1]), int(row[2])) for row in rows}
