"""The plugin host: loads, registers, calls (with timeouts), health-tracks and refreshes plugins.

In-process plugins come from entry points and are probed with `health()`; out-of-process plugins
register over HTTP and send heartbeats. Both follow `connectors.health`'s table: `MISSED_LIMIT`
missed heartbeats (or failed probes in a row) make a plugin `offline` and withdraw its offers; it
comes back `online` on its own. Every transition is stored before it takes effect. A plugin that
fails to load, raises, or hangs is logged and contained: every call runs under a timeout and any
exception becomes a `ConnectorError`, so the node itself never blocks or crashes on a plugin.
Add, remove and upgrade (re-add under the same name) happen while the node runs.

With a store, several hosts (replicas of the connectors role) share one database, which holds
the truth: `sync()` makes this host adopt, upgrade and drop plugins as stored and take their
stored states and snapshots (`connectors.hosted`); a heartbeat to any replica is one UPDATE of
the stored last-seen time; `check_heartbeats()` decides offline from that stored time on every
replica (the conditional UPDATE stores the decision once). Probes and data-source refreshes call
the platforms, so the node runs them on one replica per round (`probe()`, `refresh()`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

from connectors.contract import ComputePlugin
from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    PluginLoadError,
    PluginNotFound,
    Unauthorized,
)
from connectors.health import PluginState, missed_heartbeats, next_state
from connectors.hosted import (
    HostedPlugin,
    HostSettings,
    RefreshReport,
    hosted_from_row,
    plan_sync,
    stored_state,
    token_digest,
)
from connectors.loading import Plugin, build
from connectors.remote.client import RemotePlugin
from connectors.store import options_json
from connectors.table import PluginTable

log = logging.getLogger("cpnode.connectors")
__all__ = ["HostSettings", "HostedPlugin", "PluginHost", "RefreshReport"]


class PluginHost(PluginTable):
    """Hosts every plugin of one node (one replica's copy when a store is shared)."""

    # -- adding and removing ------------------------------------------------------------------------

    async def _install(self, hosted: HostedPlugin) -> HostedPlugin:
        """Start a new plugin, check it answers, then swap it in for any old one of that name."""
        assert hosted.plugin is not None
        installed = False
        try:
            try:
                await self.guarded(hosted.name, hosted.plugin.start())
                info = await self.guarded(hosted.name, hosted.plugin.info())
                await self.guarded(hosted.name, hosted.plugin.health())
            except ConnectorError as exc:
                raise PluginLoadError(f"plugin {hosted.name!r} did not start: {exc}") from exc
            hosted.version, hosted.kind = info.version, info.kind
            hosted.registered_ms = hosted.last_seen_ms = self.now_ms()
            hosted.generation = secrets.token_hex(8)
            hosted.state = "online"
            async with self._lock:
                old = self._plugins.get(hosted.name)
                if self.store is not None:
                    await asyncio.to_thread(self.store.save, hosted.row())
                self._plugins[hosted.name] = hosted
                installed = True
                self.load_errors.pop(hosted.name, None)
        finally:
            if not installed:  # failed, or cancelled (a stop): never swapped in, so closed here
                await self._close_quietly(hosted)
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
            hosted = HostedPlugin(
                name=name,
                kind=plugin.kind,
                source="entry_point",
                target=entry_point,
                options=dict(options),
                version=plugin.version,
                plugin=plugin,
                reload_code=reload,
            )
            return await self._install(hosted)
        except ConnectorError as exc:
            self.load_errors[name] = str(exc)
            log.error("plugin %s skipped: %s", name, exc)
            raise

    async def ensure_entry_point(self, name: str, entry_point: str, options: Mapping[str, Any]) -> bool:
        """Host a configured pool: adopt the stored registration when it is the same plugin with the
        same options (another replica, or this node before a restart, made it), else register it
        anew. True when it was registered here."""
        if self.store is not None:
            row = await asyncio.to_thread(self.store.get, name)
            if (
                row is not None
                and (row.source, row.target) == ("entry_point", entry_point)
                and options_json(row.options) == options_json(options)
            ):
                return False  # the next sync() hosts it as stored
        await self.add_entry_point(name, entry_point, options)
        return True

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
            heartbeat_digest=token_digest(heartbeat_token),
        )
        return await self._install(hosted), heartbeat_token

    async def remove(self, name: str) -> HostedPlugin:
        """Stop hosting a plugin (on every replica: the registration is deleted); its offers go at once."""
        async with self._lock:
            hosted = self._plugins.get(name)
            if hosted is None and self.store is not None:  # registered elsewhere, not synced here yet
                row = await asyncio.to_thread(self.store.get, name)
                hosted = None if row is None else hosted_from_row(row)
            if hosted is None:
                raise PluginNotFound(f"no plugin named {name!r}")
            if self.store is not None:
                await asyncio.to_thread(self.store.delete, name)
            hosted.state = next_state(hosted.state, "remove")
            self._plugins.pop(name, None)
        await self._close_quietly(hosted)
        return hosted

    # -- converging on the stored set ---------------------------------------------------------------

    async def sync(self) -> None:
        """Adopt, upgrade and drop plugins as stored, take stored states, last-seen times and snapshots,
        then load here the plugins this replica does not run yet (see `connectors.hosted`)."""
        if self.store is None:
            return
        store = self.store
        retired: list[HostedPlugin] = []
        async with self._lock:
            plan = plan_sync(await asyncio.to_thread(store.heads), self._plugins)
            for row in plan.adopt:
                old = self._plugins.get(row.name)
                if old is not None:
                    retired.append(old)
                log.info(
                    "plugin %s: %s as stored", row.name, "registered" if old is None else "re-registered"
                )
                self._plugins[row.name] = hosted_from_row(row)
            for row in plan.update:
                hosted = self._plugins[row.name]
                hosted.state, hosted.last_error = stored_state(row.state), row.last_error
                hosted.last_seen_ms = max(hosted.last_seen_ms, row.last_seen_ms)
            for name in plan.drop:
                log.info("plugin %s: removed as stored", name)
                retired.append(self._plugins.pop(name))
                self.load_errors.pop(name, None)
            for name in plan.clear_snapshots:
                self._plugins[name].snapshot, self._plugins[name].snapshot_ms = None, 0
            loaded = await asyncio.to_thread(store.snapshots, plan.load_snapshots)
            for name, (data, fetched_ms, duration_ms) in loaded.items():
                hosted = self._plugins[name]
                hosted.snapshot, hosted.snapshot_ms, hosted.snapshot_duration_ms = (
                    data,
                    fetched_ms,
                    duration_ms,
                )
        for old in retired:
            await self._close_quietly(old)
        await self._bounded([partial(self._load, h) for h in self.plugins() if h.plugin is None])

    async def lookup(self, name: str) -> HostedPlugin:
        """A hosted plugin by name, syncing first if this replica does not know it yet (it may have
        been added through another replica since the last round); PluginNotFound if not stored."""
        if name not in self._plugins:
            await self.sync()
        return self.get(name)

    async def _load(self, hosted: HostedPlugin) -> None:
        """Load and start the plugin of a stored registration on this replica (no state change)."""
        plugin: Plugin
        try:
            if hosted.source == "remote":
                plugin = RemotePlugin(
                    hosted.name, hosted.target, hosted.call_token, timeout_s=self.settings.call_timeout_s
                )
            else:
                plugin = build(hosted.target, hosted.name, hosted.options, reload=hosted.reload_code)
        except ConnectorError as exc:
            self._load_failed(hosted.name, exc)
            return
        attached = False
        try:
            await self.guarded(hosted.name, plugin.start())
            async with self._lock:
                if self._plugins.get(hosted.name) is hosted and hosted.plugin is None:
                    hosted.plugin, attached = plugin, True
                    self.load_errors.pop(hosted.name, None)
        except ConnectorError as exc:
            self._load_failed(hosted.name, exc)
        finally:
            if not attached:  # failed, removed or replaced while it loaded, or the round was cancelled
                await self._close_plugin(plugin)

    def _load_failed(self, name: str, exc: ConnectorError) -> None:
        if self.load_errors.get(name) != str(exc):
            log.error("plugin %s cannot be loaded on this replica: %s", name, exc)
        self.load_errors[name] = str(exc)

    # -- heartbeats and health ----------------------------------------------------------------------

    async def heartbeat(self, name: str, token: str) -> PluginState:
        """Accept a remote plugin's heartbeat (token checked); returns its state afterwards."""
        digest, now = token_digest(token), self.now_ms()
        if self.store is None:
            hosted = self._plugins.get(name)
            if hosted is None or hosted.source != "remote":
                raise PluginNotFound(f"no remote plugin named {name!r}")
            if not hmac.compare_digest(digest, hosted.heartbeat_digest):
                raise Unauthorized("wrong heartbeat token")
            hosted.last_seen_ms = now
            state, generation = hosted.state, hosted.generation
        else:
            found = await asyncio.to_thread(self.store.beat, name, digest, now)
            if found is None:
                if await asyncio.to_thread(self.store.source_of, name) != "remote":
                    raise PluginNotFound(f"no remote plugin named {name!r}")
                raise Unauthorized("wrong heartbeat token")
            state, generation = stored_state(found[0]), found[1]
            hosted = self._plugins.get(name)
            if hosted is not None and hosted.generation == generation:
                hosted.last_seen_ms = max(hosted.last_seen_ms, now)
        await self._transition(name, generation, state, "ok")
        return next_state(state, "ok")

    async def check_heartbeats(self) -> None:
        """Take offline every remote plugin whose last heartbeat (to any replica) is too old."""
        interval_ms = int(self.settings.heartbeat_interval_s * 1000)
        limit, now = self.settings.missed_limit, self.now_ms()
        for hosted in self.plugins():
            if hosted.source != "remote" or next_state(hosted.state, "missed_limit") == hosted.state:
                continue
            if missed_heartbeats(hosted.last_seen_ms, now, interval_ms) >= limit:
                await self._transition(
                    hosted.name,
                    hosted.generation,
                    hosted.state,
                    "missed_limit",
                    f"missed {limit} heartbeats",
                    last_seen_by_ms=now - limit * interval_ms,  # a heartbeat stored since then wins
                )

    async def probe(self) -> list[str]:
        """Probe every in-process plugin's health once (a plugin not loaded here counts as a failed
        probe); returns the names probed."""
        seen: dict[str, int] = {}
        probed = [h for h in self.plugins() if h.source != "remote"]
        await self._bounded([partial(self._probe, h, seen) for h in probed])
        if self.store is not None and seen:
            await asyncio.to_thread(self.store.touch, seen)
        return [h.name for h in probed]

    async def check_health(self) -> None:
        """One whole health round on this host: sync, heartbeat ages, probes."""
        await self.sync()
        await self.check_heartbeats()
        await self.probe()

    async def _probe(self, hosted: HostedPlugin, seen: dict[str, int]) -> None:
        try:
            health = await self.guarded(hosted.name, self.loaded(hosted.name).health())
            ok, error = health.ok, health.detail
        except ConnectorError as exc:
            ok, error = False, str(exc)
        if ok:
            hosted.last_seen_ms = seen[hosted.name] = self.now_ms()
            await self._transition(hosted.name, hosted.generation, hosted.state, "ok")
            return
        hosted.failures += 1
        if hosted.failures >= self.settings.missed_limit:
            await self._transition(hosted.name, hosted.generation, hosted.state, "missed_limit", error)
        await self._note_error(hosted, error)

    # -- data sources ---------------------------------------------------------------------------------

    async def refresh(self, names: Collection[str] | None = None) -> RefreshReport:
        """Fetch every (or the named) online compute plugin's data source, concurrently (bounded), with
        timeouts, and store each snapshot (if its registration still stands)."""
        report = RefreshReport()
        started = time.perf_counter()

        async def fetch(hosted: HostedPlugin) -> None:
            began = time.perf_counter()
            try:
                plugin = self.loaded(hosted.name)
                assert isinstance(plugin, ComputePlugin)
                data = await self.guarded(hosted.name, plugin.data_source())
            except ConnectorError as exc:
                report.results[hosted.name] = (False, round((time.perf_counter() - began) * 1000), str(exc))
                await self._note_error(hosted, str(exc))
                return
            duration, fetched_ms = round((time.perf_counter() - began) * 1000), self.now_ms()
            if self.store is not None and not await asyncio.to_thread(
                self.store.save_snapshot, hosted.name, hosted.generation, data, fetched_ms, duration
            ):
                report.results[hosted.name] = (False, duration, "re-registered or removed meanwhile")
                return
            report.results[hosted.name] = (True, duration, "")
            hosted.snapshot, hosted.snapshot_ms, hosted.snapshot_duration_ms = data, fetched_ms, duration

        targets = [
            p
            for p in self._plugins.values()
            if p.state == "online" and p.kind == "compute" and (names is None or p.name in names)
        ]
        await self._bounded([partial(fetch, p) for p in targets])
        return RefreshReport(report.results, (time.perf_counter() - started) * 1000)

    def stale(self, max_age_ms: int) -> list[str]:
        """Online compute plugins whose snapshot is missing or older than `max_age_ms`."""
        oldest = self.now_ms() - max_age_ms
        return [
            p.name
            for p in self.plugins()
            if p.state == "online" and p.kind == "compute" and (p.snapshot is None or p.snapshot_ms < oldest)
        ]
