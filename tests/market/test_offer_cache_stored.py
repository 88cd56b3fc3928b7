"""The pools' stored snapshots as an offer source (a process without the connectors role) declare
a version read with the demand's other reads (node.pools.component.StoredOffers), so the offer
cache calls the source only to build: not per demand while the snapshots stand, and at once
after a newer snapshot is stored or a plugin goes offline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from connectors import loading
from connectors.contract import DataSource
from connectors.host import PluginHost
from connectors.store import PluginStore
from node.market.columns import site_of
from node.market.offer_cache import OfferCache
from node.network.view import NetworkView
from node.offers import OfferSource
from node.pools.component import StoredOffers
from node.trading.capacity import Capacity
from tests.connectors import scripted
from tests.connectors.test_host import IDENTITY, FakeClock
from tests.connectors.test_replicas import SETTINGS

NOW = 1_900_000_000


class CountingStore(PluginStore):
    """A plugin store that counts the reads of the snapshots' bodies."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.reads = 0

    def online_snapshots(self) -> dict[str, tuple[DataSource, int]]:
        """The snapshots, counted."""
        self.reads += 1
        return super().online_snapshots()


@pytest.fixture(autouse=True)
def fixture_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Installed entry points plus the scripted test plugins."""
    real = loading.installed()
    monkeypatch.setattr(loading, "installed", lambda: {**real, **scripted.ENTRY_POINTS})
    yield
    scripted.BEHAVIOUR.clear()


@pytest.fixture(name="host")
async def fixture_host(engine: Engine) -> AsyncIterator[tuple[PluginHost, FakeClock]]:
    """A connectors replica over the database (it stores the snapshots) and its clock."""
    clock = FakeClock()
    host = PluginHost(PluginStore(engine), SETTINGS, clock=clock)
    host.identities["pool"] = IDENTITY
    yield host, clock
    await host.close()


def ids(columns: Any) -> list[str]:
    """The offer ids in the columns."""
    return [str(row["id"]) for row in columns.rows]


async def test_the_cache_calls_stored_snapshots_only_when_they_change(
    engine: Engine, host: tuple[PluginHost, FakeClock]
) -> None:
    """Demands over unchanged snapshots neither rebuild nor read the snapshots' bodies; a newer
    snapshot and a plugin gone offline are each seen by the next demand."""
    replica, clock = host
    await replica.add_entry_point("pool", "scripted", {})
    await replica.refresh()
    plugins = CountingStore(engine)
    stored = StoredOffers(plugins, {"pool": IDENTITY}, {})
    sources: dict[str, OfferSource] = {"connectors": stored}
    Capacity(engine).wrap(sources)  # as the trading component wraps every source
    cache = OfferCache(engine, sources)
    view = NetworkView()
    first = await cache.columns(view, NOW, site_of)
    assert ids(first)
    assert (cache.builds, plugins.reads) == (1, 1)
    for _ in range(3):
        assert ids(await cache.columns(view, NOW, site_of)) == ids(first)
    assert (cache.builds, plugins.reads) == (1, 1)

    clock.now += 30
    await replica.refresh()  # a newer snapshot stored
    assert ids(await cache.columns(view, NOW, site_of)) == ids(first)
    assert (cache.builds, plugins.reads) == (2, 2)

    row = PluginStore(engine).get("pool")
    assert row is not None
    assert PluginStore(engine).set_state("pool", row.generation, "offline", 1, "gone", ("online",))
    assert ids(await cache.columns(view, NOW, site_of)) == []
    assert (cache.builds, plugins.reads) == (3, 3)


async def test_the_version_is_declared_only_while_fresh(
    engine: Engine, host: tuple[PluginHost, FakeClock]
) -> None:
    """A caller that never reads the version (catalog issuing) gets None once it is older than
    FRESH_S, so it calls the source rather than trust an old version; a call renews it."""
    replica, _clock = host
    await replica.add_entry_point("pool", "scripted", {})
    await replica.refresh()
    now = [100.0]
    stored = StoredOffers(PluginStore(engine), {"pool": IDENTITY}, {}, clock=lambda: now[0])
    assert stored.content_version() is None
    offers = await stored()
    version = stored.content_version()
    assert offers
    assert version is not None
    stored.take(stored.read())
    assert stored.content_version() == version  # the same snapshots, read without their bodies
    now[0] += StoredOffers.FRESH_S + 0.5
    assert stored.content_version() is None
    await stored()
    assert stored.content_version() == version
