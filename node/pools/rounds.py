"""The connectors role's rounds on one replica: sync with the database, heartbeat ages, and the
probes and data-source refreshes that one replica at a time runs under a database lease.

Every process running the `connectors` role hosts every stored plugin. Each health round (every
`heartbeat_interval_s`) a replica syncs its host with the database (adds, upgrades, removals,
states, snapshots made elsewhere) and takes offline the remote plugins whose stored last heartbeat
is too old; these cost the platforms nothing, so every replica runs them and the conditional
UPDATEs store each decision once. Probing in-process plugins and refreshing data sources call the
platforms (a cloud adapter's health probe is itself a data-source call), so each runs on the one
replica holding its lease (`connectors.probe`, `connectors.refresh`): that replica stores the
states and snapshots, and every other replica serves them after its next sync. A lease lasts two
rounds plus one call timeout, so its holder keeps it while alive; when the holder stops cleanly it
gives its leases up at once, when it dies another replica takes over once they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from connectors.host import PluginHost
from connectors.stopping import stop_tasks
from node import leases
from node.db import in_thread, log_failure
from node.pools.settings import ConnectorsSection

log = logging.getLogger("cpnode.pools")
PROBE_LEASE = "connectors.probe"
REFRESH_LEASE = "connectors.refresh"


@dataclass
class ReplicaWork:
    """What this replica's rounds did (shown as `replica` by `GET /api/v1/plugins`)."""

    replica: str
    health_rounds: int = 0
    probe_rounds: int = 0
    probe_rounds_skipped: int = 0
    probes: int = 0
    refresh_rounds: int = 0
    refresh_rounds_skipped: int = 0
    data_source_calls: int = 0


class Rounds:
    """Runs one replica's health and refresh rounds over its plugin host."""

    def __init__(
        self, host: PluginHost, engine: Engine, replica_id: str, settings: ConnectorsSection
    ) -> None:
        self.host = host
        self.engine = engine
        # Its own lease holder name, so releasing these leases never touches the scheduler's.
        self.holder = f"{replica_id}/connectors"
        self.settings = settings
        self.work = ReplicaWork(replica_id)

    async def leased(self, lease: str, every_s: float) -> bool:
        """Take or renew `lease` for this replica; False while another replica holds it."""
        ttl_ms = int((2 * every_s + self.settings.call_timeout_s) * 1000)
        now_ms = int(time.time() * 1000)
        try:
            return await in_thread(self.engine, leases.try_acquire, lease, self.holder, now_ms, ttl_ms)
        except Exception as exc:  # the database may be briefly unavailable: skip this round
            log.warning("connectors: could not take the %s lease: %s", lease, exc)
            return False

    async def start(self, registered: list[str]) -> None:
        """First round at start-up: sync, then refresh what this replica registered, and everything
        if it takes the refresh lease (else only snapshots no live holder keeps fresh)."""
        await self.host.sync()
        if registered:
            await self.host.refresh(registered)
        if await self.leased(REFRESH_LEASE, self.settings.refresh_interval_s):
            await self._refresh()
            return
        abandoned_ms = int((2 * self.settings.refresh_interval_s + self.settings.call_timeout_s) * 1000)
        stale = self.host.stale(abandoned_ms)
        if stale:
            await self.host.refresh(stale)

    async def health_round(self) -> None:
        """Sync, decide heartbeat ages, and probe in-process plugins if this replica holds the lease."""
        self.work.health_rounds += 1
        await self.host.sync()
        await self.host.check_heartbeats()
        if await self.leased(PROBE_LEASE, self.settings.heartbeat_interval_s):
            self.work.probe_rounds += 1
            self.work.probes += len(await self.host.probe())
        else:
            self.work.probe_rounds_skipped += 1

    async def refresh_round(self) -> None:
        """Refresh every data source if this replica holds the refresh lease."""
        if await self.leased(REFRESH_LEASE, self.settings.refresh_interval_s):
            await self._refresh()
        else:
            self.work.refresh_rounds_skipped += 1

    async def _refresh(self) -> None:
        self.work.refresh_rounds += 1
        report = await self.host.refresh()
        self.work.data_source_calls += len(report.results)

    async def release(self) -> None:
        """Give up this replica's leases (clean shutdown), so another replica takes over at once."""
        try:
            await in_thread(self.engine, leases.release_all, self.holder)
        except Exception as exc:  # they expire on their own; shutting down matters more
            log.warning("connectors: could not release leases: %s", exc)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run both rounds in the background until the block ends, then release the leases."""
        tasks = [
            asyncio.create_task(_every(self.settings.heartbeat_interval_s, "health", self.health_round)),
            asyncio.create_task(_every(self.settings.refresh_interval_s, "refresh", self.refresh_round)),
        ]
        try:
            yield
        finally:
            await stop_tasks(tasks, "a connectors round")
            await self.release()


async def _every(interval_s: float, what: str, fn: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await fn()
        except Exception as exc:  # one bad round must not stop the loop
            log_failure(log, exc, "connectors %s round failed", what)
