"""The plugin host: loads, registers, calls (with timeouts), health-tracks and refreshes plugins.

In-process plugins come from entry points and are probed with `health()`; out-of-process plugins
register over HTTP and send heartbeats. Both follow `connectors.health`'s table: `MISSED_LIMIT`
missed heartbeats (or failed probes in a row) make a plugin `offline` and withdraw its offers; it
comes back `online` on its own. Every transition is stored before it takes effect. A plugin that
fails to load, raises, or hangs is logged and contained: every call runs under a timeout and any
exception becomes a `ConnectorError`, so the node itself never blocks or crashes on a plugin.
Add, remove and upgrade (re-add under the same name) happen while the node runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from connectors.contract import ComputePlugin, DataSource
from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    PlatformError,
    PluginLoadError,
    PluginNotFound,
    PluginOffline,
    PluginTimeout,
    Unauthorized,
)
from connectors.health import MISSED_LIMIT, HealthEvent, PluginState, missed_heartbeats, next_state
from connectors.loading import Plugin, build
from connectors.network.contract import NetworkPlugin
from connectors.offers import Offer, PoolIdentity, offers_from_snapshots
from connectors.remote.client import RemotePlugin
from connectors.store import PluginRow, PluginStore

log = logging.getLogger("cpnode.connectors")
T = TypeVar("T")


@dataclass(frozen=True)
class HostSettings:
    """Timeouts and bounds of the host (the node fills it from `[connectors]`)."""

    call_timeout_s: float = 10.0
    heartbeat_interval_s: float = 2.0
    missed_limit: int = MISSED_LIMIT
    refresh_concurrency: int = 32


@dataclass
class HostedPlugin:
    """One plugin as the host sees it."""

    name: str
    kind: str
    source: str  # "entry_point" or "remote"
    target: str  # entry point name or URL
    options: Mapping[str, Any]
    version: str
    plugin: Plugin
    state: PluginState = "starting"
    call_token: str = ""
    heartbeat_digest: str = ""
    registered_ms: int = 0
    last_seen_ms: int = 0
    failures: int = 0
    last_error: str = ""
    snapshot: DataSource | None = None
    snapshot_ms: int = 0
    snapshot_duration_ms: int = 0


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh of every data source did: per plugin (ok, duration ms, error), and wall time."""

    results: dict[str, tuple[bool, int, str]] = field(default_factory=dict)
    wall_ms: float = 0.0

    @property
    def slowest_ms(self) -> int:
        """The slowest single data-source call."""
        return max((duration for _ok, duration, _err in self.results.values()), default=0)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PluginHost:
    """Hosts every plugin of one node."""

    def __init__(
        self,
        store: PluginStore | None = None,
        settings: HostSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or HostSettings()
        self.clock = clock
        self.identities: dict[str, PoolIdentity] = {}
        self.load_errors: dict[str, str] = {}
        self._plugins: dict[str, HostedPlugin] = {}
        self._seen: dict[str, int] = {}
        self._lock = asyncio.Lock()

    def now_ms(self) -> int:
        """The host clock in epoch milliseconds."""
        return int(self.clock() * 1000)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, name: str) -> HostedPlugin:
        """A hosted plugin by name, or PluginNotFound."""
        try:
            return self._plugins[name]
        except KeyError:
            raise PluginNotFound(f"no plugin named {name!r}") from None

    def plugins(self) -> list[HostedPlugin]:
        """Every hosted plugin, by name."""
        return [self._plugins[name] for name in sorted(self._plugins)]

    def offers(self) -> list[Offer]:
        """Offers of every online compute plugin's latest snapshot (offline plugins have none)."""
        snapshots = {
            p.name: (p.snapshot, p.snapshot_ms)
            for p in self._plugins.values()
            if p.state == "online" and p.snapshot is not None
        }
        return offers_from_snapshots(snapshots, self.identities)

    # -- calling ----------------------------------------------------------------------------------

    async def guarded(self, name: str, call: Awaitable[T], timeout_s: float | None = None) -> T:
        """Await a plugin call under a timeout, turning any failure into a ConnectorError."""
        limit = timeout_s or self.settings.call_timeout_s
        try:
            return await asyncio.wait_for(call, limit)
        except TimeoutError:
            raise PluginTimeout(f"plugin {name!r} did not answer within {limit} s") from None
        except ConnectorError:
            raise
        except Exception as exc:  # a plugin's own bug must not escape as a 500
            log.warning("plugin %s raised %r", name, exc)
            raise PlatformError(f"plugin {name!r} failed: {type(exc).__name__}: {exc}") from exc

    def _online(self, name: str) -> Plugin:
        hosted = self.get(name)
        if hosted.state != "online":
            raise PluginOffline(f"plugin {name!r} is {hosted.state}")
        return hosted.plugin

    async def call(
        self, name: str, fn: Callable[[ComputePlugin], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        """Call an online compute plugin, e.g. `await host.call("pool", lambda p: p.get_instance(i))`."""
        plugin = self._online(name)
        if not isinstance(plugin, ComputePlugin):
            raise InvalidRequest(f"plugin {name!r} is a network plugin")
        return await self.guarded(name, fn(plugin), timeout_s)

    async def call_network(
        self, name: str, fn: Callable[[NetworkPlugin], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        """Call an online network plugin."""
        plugin = self._online(name)
        if not isinstance(plugin, NetworkPlugin):
            raise InvalidRequest(f"plugin {name!r} is a compute plugin")
        return await self.guarded(name, fn(plugin), timeout_s)

    # -- state transitions --------------------------------------------------------------------------

    async def _event(self, hosted: HostedPlugin, event: HealthEvent, error: str = "") -> None:
        new = next_state(hosted.state, event)
        if new == hosted.state:
            return
        if self.store is not None:  # stored before it takes effect
            await asyncio.to_thread(self.store.set_state, hosted.name, new, self.now_ms(), error)
        log.info("plugin %s: %s -> %s%s", hosted.name, hosted.state, new, f" ({error})" if error else "")
        hosted.state = new
        hosted.failures = 0

    # -- adding and removing ------------------------------------------------------------------------

    async def _install(self, hosted: HostedPlugin) -> HostedPlugin:
        """Start a new plugin, check it answers, then swap it in for any old one of that name."""
        try:
            await self.guarded(hosted.name, hosted.plugin.start())
            info = await self.guarded(hosted.name, hosted.plugin.info())
            await self.guarded(hosted.name, hosted.plugin.health())
        except ConnectorError as exc:
            await self._close_quietly(hosted)
            raise PluginLoadError(f"plugin {hosted.name!r} did not start: {exc}") from exc
        hosted.version, hosted.kind = info.version, info.kind
        hosted.registered_ms = hosted.last_seen_ms = self.now_ms()
        async with self._lock:
            old = self._plugins.get(hosted.name)
            if self.store is not None:
                row = PluginRow(
                    name=hosted.name,
                    kind=hosted.kind,
                    source=hosted.source,
                    target=hosted.target,
                    options=hosted.options,
                    version=hosted.version,
                    state="online",
                    call_token=hosted.call_token,
                    heartbeat_token_sha256=hosted.heartbeat_digest,
                    registered_ms=hosted.registered_ms,
                    state_changed_ms=hosted.registered_ms,
                    last_seen_ms=hosted.last_seen_ms,
                    last_error="",
                )
                await asyncio.to_thread(self.store.save, row)
            hosted.state = "online"
            self._plugins[hosted.name] = hosted
            self.load_errors.pop(hosted.name, None)
        if old is not None:
            log.info("plugin %s upgraded %s -> %s", hosted.name, old.version, hosted.version)
            await self._close_quietly(old)
        return hosted

    async def add_entry_point(
        self, name: str, entry_point: str, options: Mapping[str, Any], *, reload: bool = False
    ) -> HostedPlugin:
        """Load, start and host an in-process plugin (replacing one of the same name: an upgrade)."""
        try:
            plugin = build(entry_point, name, options, reload=reload)
        except ConnectorError as exc:
            self.load_errors[name] = str(exc)
            log.error("plugin %s skipped: %s", name, exc)
            raise
        hosted = HostedPlugin(
            name=name,
            kind=plugin.kind,
            source="entry_point",
            target=entry_point,
            options=dict(options),
            version=plugin.version,
            plugin=plugin,
        )
        try:
            return await self._install(hosted)
        except ConnectorError as exc:
            self.load_errors[name] = str(exc)
            log.error("plugin %s skipped: %s", name, exc)
            raise

    async def add_remote(self, name: str, url: str, call_token: str) -> tuple[HostedPlugin, str]:
        """Host an out-of-process plugin that registered itself; returns it and its new heartbeat token."""
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest(f"plugin url must be http(s)://, got {url!r}")
        heartbeat_token = secrets.token_urlsafe(24)
        client = RemotePlugin(name, url, call_token, timeout_s=self.settings.call_timeout_s)
        hosted = HostedPlugin(
            name=name,
            kind="compute",
            source="remote",
            target=url,
            options={},
            version="?",
            plugin=client,
            call_token=call_token,
            heartbeat_digest=_digest(heartbeat_token),
        )
        return await self._install(hosted), heartbeat_token

    async def remove(self, name: str) -> HostedPlugin:
        """Stop hosting a plugin; its offers disappear at once."""
        async with self._lock:
            hosted = self.get(name)
            if self.store is not None:
                await asyncio.to_thread(self.store.delete, name)
            hosted.state = next_state(hosted.state, "remove")
            del self._plugins[name]
            self._seen.pop(name, None)
        await self._close_quietly(hosted)
        return hosted

    async def _close_quietly(self, hosted: HostedPlugin) -> None:
        try:
            await asyncio.wait_for(hosted.plugin.close(), self.settings.call_timeout_s)
        except Exception as exc:  # closing a broken plugin must not fail the caller
            log.warning("plugin %s did not close cleanly: %r", hosted.name, exc)

    async def restore_remote(self) -> int:
        """Re-host the out-of-process plugins registered before a restart (`starting` until they heartbeat)."""
        if self.store is None:
            return 0
        rows = [row for row in await asyncio.to_thread(self.store.load) if row.source == "remote"]
        for row in rows:
            client = RemotePlugin(
                row.name, row.target, row.call_token, timeout_s=self.settings.call_timeout_s
            )
            self._plugins[row.name] = HostedPlugin(
                name=row.name,
                kind=row.kind,
                source="remote",
                target=row.target,
                options={},
                version=row.version,
                plugin=client,
                call_token=row.call_token,
                heartbeat_digest=row.heartbeat_token_sha256,
                registered_ms=row.registered_ms,
                last_seen_ms=row.last_seen_ms,
            )
            await self._event(
                self._plugins[row.name], "missed_limit", "node restarted; waiting for a heartbeat"
            )
        return len(rows)

    # -- heartbeats and health ----------------------------------------------------------------------

    async def heartbeat(self, name: str, token: str) -> PluginState:
        """Accept a remote plugin's heartbeat (token checked); returns its state afterwards."""
        hosted = self._plugins.get(name)
        if hosted is None or hosted.source != "remote":
            raise PluginNotFound(f"no remote plugin named {name!r}")
        if not hmac.compare_digest(_digest(token), hosted.heartbeat_digest):
            raise Unauthorized("wrong heartbeat token")
        hosted.last_seen_ms = self._seen[name] = self.now_ms()
        if hosted.state != "online":
            await self._event(hosted, "ok")
        return hosted.state

    async def check_health(self) -> None:
        """One health round: count missed heartbeats, probe in-process plugins, store last-seen times."""
        interval_ms = int(self.settings.heartbeat_interval_s * 1000)
        now = self.now_ms()
        probes = []
        for hosted in list(self._plugins.values()):
            if hosted.source == "remote":
                if missed_heartbeats(hosted.last_seen_ms, now, interval_ms) >= self.settings.missed_limit:
                    await self._event(
                        hosted, "missed_limit", f"missed {self.settings.missed_limit} heartbeats"
                    )
            else:
                probes.append(self._probe(hosted))
        await self._bounded(probes)
        if self.store is not None and self._seen:
            seen, self._seen = self._seen, {}
            await asyncio.to_thread(self.store.touch, seen)

    async def _probe(self, hosted: HostedPlugin) -> None:
        try:
            health = await self.guarded(hosted.name, hosted.plugin.health())
            ok, error = health.ok, health.detail
        except ConnectorError as exc:
            ok, error = False, str(exc)
        if ok:
            hosted.last_seen_ms = self.now_ms()
            await self._event(hosted, "ok")
            return
        hosted.failures += 1
        hosted.last_error = error
        if hosted.failures >= self.settings.missed_limit:
            await self._event(hosted, "missed_limit", error)

    async def _bounded(self, calls: Sequence[Awaitable[None]]) -> None:
        gate = asyncio.Semaphore(self.settings.refresh_concurrency)

        async def one(call: Awaitable[None]) -> None:
            async with gate:
                await call

        await asyncio.gather(*(one(call) for call in calls))

    # -- data sources ---------------------------------------------------------------------------------

    async def refresh(self, names: Collection[str] | None = None) -> RefreshReport:
        """Fetch every (or the named) online compute plugin's data source, concurrently (bounded), with timeouts."""
        report = RefreshReport()
        started = time.perf_counter()

        async def fetch(hosted: HostedPlugin) -> None:
            assert isinstance(hosted.plugin, ComputePlugin)
            began = time.perf_counter()
            try:
                data = await self.guarded(hosted.name, hosted.plugin.data_source())
            except ConnectorError as exc:
                report.results[hosted.name] = (False, round((time.perf_counter() - began) * 1000), str(exc))
                hosted.last_error = str(exc)
                return
            duration = round((time.perf_counter() - began) * 1000)
            report.results[hosted.name] = (True, duration, "")
            hosted.snapshot, hosted.snapshot_ms, hosted.snapshot_duration_ms = data, self.now_ms(), duration
            if self.store is not None:
                await asyncio.to_thread(
                    self.store.save_snapshot, hosted.name, data, hosted.snapshot_ms, duration
                )

        targets = [
            p
            for p in self._plugins.values()
            if p.state == "online"
            and isinstance(p.plugin, ComputePlugin)
            and (names is None or p.name in names)
        ]
        await self._bounded([fetch(p) for p in targets])
        return RefreshReport(report.results, (time.perf_counter() - started) * 1000)

    async def close(self) -> None:
        """Close every plugin (the node is stopping; registrations stay stored)."""
        for hosted in list(self._plugins.values()):
            await self._close_quietly(hosted)
        self._plugins.clear()
