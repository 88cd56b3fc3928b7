"""The connectors component (role `connectors`): hosts plugins, tracks their health, refreshes data sources.

Every process running the `connectors` role is a replica that hosts every stored plugin; the
database holds the truth and `node.pools.rounds` keeps each replica in step with it (sync and
heartbeat ages on every replica, probes and data-source refreshes on the one holding the lease).
These rounds are tasks of the app's lifecycle, not scheduler jobs, because the connectors role
may run in a process without the `scheduler` role. Processes without the role build the node's
offers from the stored snapshots of online plugins.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Engine

from connectors.errors import ConnectorError
from connectors.host import PluginHost
from connectors.offers import Offer, PoolIdentity, offers_from_snapshots
from connectors.store import PLUGINS, SNAPSHOTS, PluginStore
from node.config import Settings
from node.context import NodeContext
from node.offers import CatalogOffer, OfferSource
from node.pools import gateway, routes
from node.pools.rounds import Rounds

log = logging.getLogger("cpnode.pools")


def identities(settings: Settings) -> dict[str, PoolIdentity]:
    """The configured identifier fields of each pool."""
    return {pool.name: pool.identity.identity() for pool in settings.pools if pool.identity is not None}


def pool_options(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """A pool's options with a relative `root` resolved against the config directory."""
    resolved = dict(options)
    if isinstance(resolved.get("root"), str):
        resolved["root"] = str(settings.path(resolved["root"]))
    return resolved


def catalog_offer(offer: Offer, site: str | None) -> CatalogOffer:
    """A connectors offer in the catalog's offer shape (federation.catalog.OFFER_FIELDS)."""
    entry: CatalogOffer = {
        "id": offer.offer_id,
        "pool": offer.pool,
        "region": offer.region_id,
        "chip_vendor": offer.chip_vendor,
        "chip_model": offer.chip_model,
        "chips_per_unit": offer.chips,
        "cpus": offer.cpus,
        "memory_mib": offer.memory_mib,
        "storage_gib": offer.storage_gib,
        "free_units": offer.free,
        "price_per_unit_hour": offer.price_minor_per_hour,
        "currency": offer.currency,
        "networks": [site] if site else [],
        "tags": [f"city:{offer.city}", f"score-static:{offer.score_static_milli}"],
        "metric_score": offer.score_composite_milli,
    }
    if offer.identifier:
        entry["compute_id"] = offer.identifier
    if offer.capacity_cost and offer.capacity_free is not None:
        # Flavors of one pool region share its capacity (node.trading.capacity counts it per group).
        entry["capacity_group"] = f"{offer.pool}/{offer.region_id}"
        entry["capacity_unit"] = offer.capacity_unit
        entry["capacity_cost"] = offer.capacity_cost
        entry["capacity_free"] = offer.capacity_free
    return entry


class HostOffers:
    """The node's offers from the live plugin host. Its `content_version()` changes whenever a plugin's
    registration, state or latest snapshot does; with several replicas the host's copy follows the
    stored ones (each sync round), so the version follows the stored snapshot times and catalog
    issuing skips unchanged head polls cheaply on every replica."""

    def __init__(self, host: PluginHost, sites: dict[str, str | None]) -> None:
        self._host = host
        self._sites = sites

    async def __call__(self) -> list[CatalogOffer]:
        return [catalog_offer(offer, self._sites.get(offer.pool)) for offer in self._host.offers()]

    def content_version(self) -> Hashable:
        """(plugin, registration generation, state, snapshot time) of every hosted plugin."""
        return tuple((p.name, p.generation, p.state, p.snapshot_ms) for p in self._host.plugins())


def offer_source(ctx: NodeContext, host: PluginHost | None) -> OfferSource:
    """The node's offers from the connectors: the live host if here, else the stored snapshots."""
    sites = {pool.name: pool.site for pool in ctx.settings.pools}
    if host is not None:
        return HostOffers(host, sites)
    return StoredOffers(PluginStore(ctx.engine), identities(ctx.settings), sites)


def snapshot_times(engine: Engine) -> tuple[tuple[str, int], ...]:
    """(plugin, fetched ms) of the stored snapshot of every online plugin (no bodies), by name:
    what `PluginStore.online_snapshots` would read, as a version."""
    query = (
        sa.select(SNAPSHOTS.c.plugin, SNAPSHOTS.c.fetched_ms)
        .join(PLUGINS, PLUGINS.c.name == SNAPSHOTS.c.plugin)
        .where(PLUGINS.c.state == "online")
        .order_by(SNAPSHOTS.c.plugin)
    )
    with engine.connect() as conn:
        return tuple((str(name), int(fetched)) for name, fetched in conn.execute(query).all())


class StoredOffers:
    """The node's offers from the stored snapshots of online plugins (a process without the
    connectors role). Its version is (plugin, snapshot time) of every online plugin with a
    snapshot, read without the snapshots' bodies: `read()` (blocking; the market's offer cache
    runs it in the thread hop of each demand's other reads) then `take()` on the loop. Each call
    takes the version of the snapshots it read. A version is declared only for FRESH_S after it was
    read, so a caller that never reads it (catalog issuing) calls the source as before."""

    FRESH_S = 1.0

    def __init__(
        self,
        plugins: PluginStore,
        known: dict[str, PoolIdentity],
        sites: dict[str, str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._plugins = plugins
        self._known = known
        self._sites = sites
        self._clock = clock
        self._version: tuple[tuple[str, int], ...] | None = None
        self._read_at = -math.inf

    async def __call__(self) -> list[CatalogOffer]:
        snapshots = await asyncio.to_thread(self._plugins.online_snapshots)
        self.take(tuple(sorted((name, fetched) for name, (_data, fetched) in snapshots.items())))
        offers = offers_from_snapshots(snapshots, self._known)
        return [catalog_offer(offer, self._sites.get(offer.pool)) for offer in offers]

    def read(self) -> tuple[tuple[str, int], ...]:
        """(plugin, snapshot time in ms) of every online plugin's snapshot, read now (blocking)."""
        return snapshot_times(self._plugins.engine)

    def take(self, version: tuple[tuple[str, int], ...]) -> None:
        """Keep `version` as the one read last (on the event loop)."""
        self._version, self._read_at = version, self._clock()

    def content_version(self) -> Hashable | None:
        """The version read last, if read within FRESH_S; else None (the source is then called)."""
        fresh = self._clock() - self._read_at <= self.FRESH_S
        return ("snapshots", self._version) if fresh and self._version is not None else None


async def load_configured(host: PluginHost, settings: Settings) -> list[str]:
    """Host every configured pool (adopting a stored registration of the same plugin and options);
    a pool whose plugin is broken is logged and skipped. Returns the pools registered anew."""
    registered = []
    for pool in settings.pools:
        try:
            if await host.ensure_entry_point(pool.name, pool.plugin, pool_options(settings, pool.options)):
                registered.append(pool.name)
        except ConnectorError as exc:
            log.error("pool %s skipped: %s", pool.name, exc)
    return registered


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the connectors routes, lifecycle and offer source to a node."""
    settings = ctx.settings
    here = "connectors" in ctx.roles
    host = PluginHost(PluginStore(ctx.engine), settings.connectors.host_settings()) if here else None
    if settings.pools:
        ctx.offer_sources.pop("config", None)  # pools replace offers declared in the config
    ctx.offer_sources["connectors"] = offer_source(ctx, host)
    if host is None:
        return
    host.identities = identities(settings)
    rounds = Rounds(host, ctx.engine, ctx.replica_id, settings.connectors)
    routes.add_routes(app, host, rounds.work)
    gateway.add_routes(app, host)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        try:
            await rounds.start(await load_configured(host, settings))
            async with rounds.running():
                yield
        finally:
            await host.close()

    app.cleanup_ctx.append(lifecycle)
