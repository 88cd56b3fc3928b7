"""What the plugin host knows about each plugin, and how a replica converges on the stored set (pure).

With several replicas of the connectors role over one database, the database holds the truth
(registrations, health states, last-seen times, snapshots) and each replica's host holds a copy
that a sync round brings up to date. `plan_sync` decides, without I/O, what a round changes:

- a stored registration this replica does not host, or hosts an older generation of, is adopted
  (an upgrade or re-registration elsewhere replaces the copy here);
- a registration hosted here takes the stored state, last-seen time and last error;
- a plugin hosted here that is no longer stored is dropped (removed on another replica);
- a snapshot whose stored time differs from the one held is loaded (or cleared when gone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from connectors.contract import DataSource
from connectors.health import MISSED_LIMIT, PluginState
from connectors.loading import Plugin
from connectors.store import PluginRow, StoredPlugin


@dataclass(frozen=True)
class HostSettings:
    """Timeouts and bounds of the host (the node fills it from `[connectors]`)."""

    call_timeout_s: float = 10.0
    heartbeat_interval_s: float = 2.0
    missed_limit: int = MISSED_LIMIT
    refresh_concurrency: int = 32


@dataclass
class HostedPlugin:
    """One plugin as the host sees it. `plugin` is None while this replica has not (or could not)
    load a registration made elsewhere; its state and offers still follow the stored ones."""

    name: str
    kind: str
    source: str  # "entry_point" or "remote"
    target: str  # entry point name or URL
    options: Mapping[str, Any]
    version: str
    plugin: Plugin | None
    state: PluginState = "starting"
    call_token: str = ""
    heartbeat_digest: str = ""
    generation: str = ""
    reload_code: bool = False
    registered_ms: int = 0
    last_seen_ms: int = 0
    failures: int = 0
    last_error: str = ""
    snapshot: DataSource | None = None
    snapshot_ms: int = 0
    snapshot_duration_ms: int = 0

    def row(self) -> PluginRow:
        """This plugin's registration as stored."""
        return PluginRow(
            name=self.name,
            kind=self.kind,
            source=self.source,
            target=self.target,
            options=self.options,
            version=self.version,
            state=self.state,
            call_token=self.call_token,
            heartbeat_token_sha256=self.heartbeat_digest,
            registered_ms=self.registered_ms,
            state_changed_ms=self.registered_ms,
            last_seen_ms=self.last_seen_ms,
            last_error=self.last_error,
            generation=self.generation,
            reload_code=self.reload_code,
        )


def stored_state(value: str) -> PluginState:
    """A stored state as a PluginState (an unknown value counts as `offline`: never offered)."""
    return cast(PluginState, value) if value in get_args(PluginState) else "offline"


def hosted_from_row(row: PluginRow) -> HostedPlugin:
    """A stored registration as this replica hosts it, before its plugin is loaded here."""
    return HostedPlugin(
        name=row.name,
        kind=row.kind,
        source=row.source,
        target=row.target,
        options=dict(row.options),
        version=row.version,
        plugin=None,
        state=stored_state(row.state),
        call_token=row.call_token,
        heartbeat_digest=row.heartbeat_token_sha256,
        generation=row.generation,
        reload_code=row.reload_code,
        registered_ms=row.registered_ms,
        last_seen_ms=row.last_seen_ms,
        last_error=row.last_error,
    )


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh of every data source did: per plugin (ok, duration ms, error), and wall time."""

    results: dict[str, tuple[bool, int, str]] = field(default_factory=dict)
    wall_ms: float = 0.0

    @property
    def slowest_ms(self) -> int:
        """The slowest single data-source call."""
        return max((duration for _ok, duration, _err in self.results.values()), default=0)


def token_digest(token: str) -> str:
    """The SHA-256 (hex) under which a heartbeat token is stored and compared."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SyncPlan:
    """What one sync round changes on a replica (see the module docstring)."""

    adopt: list[PluginRow] = field(default_factory=list)
    update: list[PluginRow] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    load_snapshots: list[str] = field(default_factory=list)
    clear_snapshots: list[str] = field(default_factory=list)


def plan_sync(stored: Sequence[StoredPlugin], hosted: Mapping[str, HostedPlugin]) -> SyncPlan:
    """The changes that bring `hosted` (this replica's copy) in line with `stored` (the database)."""
    plan = SyncPlan()
    for head in stored:
        row, mine = head.row, hosted.get(head.row.name)
        if mine is None or mine.generation != row.generation:
            plan.adopt.append(row)
            held_ms = 0
        else:
            plan.update.append(row)
            held_ms = mine.snapshot_ms if mine.snapshot is not None else 0
        if head.snapshot_ms is None:
            if held_ms:
                plan.clear_snapshots.append(row.name)
        elif head.snapshot_ms != held_ms:
            plan.load_snapshots.append(row.name)
    names = {head.row.name for head in stored}
    plan.drop.extend(name for name in sorted(hosted) if name not in names)
    return plan
