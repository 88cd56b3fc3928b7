"""The plugin host's table: the plugins one replica hosts, reading them, calling them under
timeouts, and storing their health transitions (the base of `connectors.host.PluginHost`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from connectors.contract import ComputePlugin
from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    PlatformError,
    PluginNotFound,
    PluginOffline,
    PluginTimeout,
)
from connectors.health import HealthEvent, PluginState, next_state, sources
from connectors.hosted import HostedPlugin, HostSettings
from connectors.loading import Plugin
from connectors.network.contract import NetworkPlugin
from connectors.offers import Offer, PoolIdentity, offers_from_snapshots
from connectors.store import PluginStore

log = logging.getLogger("cpnode.connectors")
T = TypeVar("T")


class PluginTable:
    """The plugins one host holds (one replica's copy when a store is shared), and how it calls them."""

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
        # Held while the copy changes together with the database (add, remove, transitions, sync),
        # so a sync never applies a read older than a change made here.
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
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            raise PluginTimeout(f"plugin {name!r} did not answer within {limit} s") from None
        except ConnectorError:
            raise
        except Exception as exc:  # a plugin's own bug must not escape as a 500
            log.warning("plugin %s raised %r", name, exc)
            raise PlatformError(f"plugin {name!r} failed: {type(exc).__name__}: {exc}") from exc

    def loaded(self, name: str) -> Plugin:
        """The plugin object of `name` on this replica, or PluginOffline if it is not loaded here."""
        hosted = self.get(name)
        if hosted.plugin is None:
            why = self.load_errors.get(name, "still loading")
            raise PluginOffline(f"plugin {name!r} is not loaded on this replica: {why}")
        return hosted.plugin

    def _online(self, name: str) -> Plugin:
        hosted = self.get(name)
        if hosted.state != "online":
            raise PluginOffline(f"plugin {name!r} is {hosted.state}")
        return self.loaded(name)

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

    async def _transition(
        self,
        name: str,
        generation: str,
        current: PluginState,
        event: HealthEvent,
        error: str = "",
        last_seen_by_ms: int | None = None,
    ) -> bool:
        """Store, then apply, the transition `event` makes from `current`; False if nothing changed
        (already there, or the stored state or generation moved on meanwhile: the next sync shows it)."""
        new = next_state(current, event)
        if new == current:
            return False
        async with self._lock:
            if self.store is not None:
                applied = await asyncio.to_thread(
                    self.store.set_state,
                    name,
                    generation,
                    new,
                    self.now_ms(),
                    error,
                    sources(event, new),
                    last_seen_by_ms,
                )
                if not applied:
                    return False
            log.info("plugin %s: %s -> %s%s", name, current, new, f" ({error})" if error else "")
            hosted = self._plugins.get(name)
            if hosted is not None and hosted.generation == generation:
                hosted.state, hosted.failures, hosted.last_error = new, 0, error
        return True

    async def _note_error(self, hosted: HostedPlugin, error: str) -> None:
        if error == hosted.last_error:
            return
        hosted.last_error = error
        if self.store is not None:
            await asyncio.to_thread(self.store.set_error, hosted.name, hosted.generation, error)

    async def _close_quietly(self, hosted: HostedPlugin) -> None:
        if hosted.plugin is not None:
            await self._close_plugin(hosted.plugin)

    async def _close_plugin(self, plugin: Plugin) -> None:
        """Close `plugin` within the call timeout. The close runs to its end even when the caller is
        cancelled meanwhile (a node stopping mid-registration): cut short, its HTTP session would
        stay open until collected."""
        closing = asyncio.ensure_future(self._close_within(plugin))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait([closing])  # ended within the call timeout; cancelled again, it goes on
            raise

    async def _close_within(self, plugin: Plugin) -> None:
        try:
            async with asyncio.timeout(self.settings.call_timeout_s):
                await plugin.close()
        except Exception as exc:  # closing a broken plugin must not fail the caller
            log.warning("plugin %s did not close cleanly: %r", plugin.name, exc)

    async def _bounded(self, calls: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Run `calls` concurrently, at most `refresh_concurrency` at once. Each coroutine is created
        only when its turn comes, so a cancelled round leaves none behind never awaited."""
        gate = asyncio.Semaphore(self.settings.refresh_concurrency)

        async def one(call: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await call()

        await asyncio.gather(*(one(call) for call in calls))

    async def close(self) -> None:
        """Close every plugin (the node is stopping; registrations stay stored)."""
        for hosted in list(self._plugins.values()):
            await self._close_quietly(hosted)
        self._plugins.clear()
