"""Two plugin hosts over one database, as two replicas of the connectors role see it (both backends).

The hosts share a fake clock; each test drives the rounds by hand (sync, heartbeat ages, probes,
refresh), so every step of the convergence is visible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from connectors import loading
from connectors.errors import PluginNotFound, PluginOffline, Unauthorized
from connectors.host import HostSettings, PluginHost
from connectors.remote.server import plugin_app
from connectors.serving import start_app
from connectors.store import PluginStore
from node.db import make_engine, upgrade, write_transaction
from node.db.migrate import _config
from node.pools.component import HostOffers
from tests.connectors import scripted
from tests.connectors.test_host import CALL_TOKEN, IDENTITY, FakeClock

SETTINGS = HostSettings(call_timeout_s=1.0, heartbeat_interval_s=2.0)


@pytest.fixture(autouse=True)
def fixture_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Installed entry points plus the scripted test plugins; behaviours reset after each test."""
    real = loading.installed()
    monkeypatch.setattr(loading, "installed", lambda: {**real, **scripted.ENTRY_POINTS})
    yield
    scripted.BEHAVIOUR.clear()


@pytest.fixture(name="clock")
def fixture_clock() -> FakeClock:
    """One clock for both replicas (their clocks agree, as NTP keeps them)."""
    return FakeClock()


@pytest.fixture(name="replicas")
async def fixture_replicas(engine: Engine, clock: FakeClock) -> AsyncIterator[tuple[PluginHost, PluginHost]]:
    """Replicas A and B: two hosts over one database."""
    a = PluginHost(PluginStore(engine), SETTINGS, clock=clock)
    b = PluginHost(PluginStore(engine), SETTINGS, clock=clock)
    for host in (a, b):
        host.identities["pool"] = IDENTITY
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture(name="remote_url")
async def fixture_remote_url() -> AsyncIterator[str]:
    """A scripted pool served over HTTP as an out-of-process plugin would be."""
    runner, url = await start_app(plugin_app(scripted.ScriptedPool("remote"), CALL_TOKEN))
    yield url
    await runner.cleanup()


def offers(host: PluginHost) -> list[dict[str, object]]:
    return [offer.model_dump() for offer in host.offers()]


async def test_a_plugin_added_on_one_replica_is_hosted_by_the_other_after_one_sync(
    replicas: tuple[PluginHost, PluginHost], clock: FakeClock
) -> None:
    """A plugin added and refreshed on A is loaded by B in its next sync, with the same state,
    identical offers from the stored snapshot and the same offer content version, which moves on
    B when A stores a newer snapshot."""
    a, b = replicas
    await a.add_entry_point("pool", "scripted", {})
    await a.refresh()
    with pytest.raises(PluginNotFound):
        b.get("pool")
    await b.sync()
    assert b.get("pool").plugin is not None
    assert (b.get("pool").state, b.get("pool").version) == ("online", "1.0")
    assert offers(b) == offers(a) != []
    assert HostOffers(b, {}).content_version() == HostOffers(a, {}).content_version()
    assert await b.call("pool", lambda p: p.list_instances()) == []
    loaded = b.get("pool").plugin
    await b.sync()  # nothing changed: the loaded plugin stays
    assert b.get("pool").plugin is loaded
    before = HostOffers(b, {}).content_version()
    clock.now += 30
    await a.refresh()
    assert HostOffers(b, {}).content_version() == before  # B serves the stored snapshot it has...
    await b.sync()
    after = HostOffers(b, {}).content_version()
    assert after != before  # ...until its next sync brings the newer one
    assert after == HostOffers(a, {}).content_version()
    assert offers(b) == offers(a)


async def test_heartbeats_to_either_replica_keep_a_remote_plugin_online_on_both(
    replicas: tuple[PluginHost, PluginHost], remote_url: str, clock: FakeClock, engine: Engine
) -> None:
    """A plugin registered on A and heartbeating only to B stays online on both for as long as it
    beats; when it stops, the first replica's offline decision is stored once, and a heartbeat to
    A brings it back on both."""
    a, b = replicas
    _hosted, token = await a.add_remote("remote", remote_url, CALL_TOKEN)
    await a.refresh()
    assert await b.heartbeat("remote", token) == "online"  # B has not synced it yet: the database decides
    with pytest.raises(Unauthorized):
        await b.heartbeat("remote", "not-the-token")
    for _ in range(6):  # 12 s, six times the window of 3 × 2 s, heartbeats only to B
        clock.now += 2.0
        assert await b.heartbeat("remote", token) == "online"
        for host in (a, b):
            await host.check_health()
            assert host.get("remote").state == "online"
    assert offers(a) == offers(b) != []
    clock.now += 6.0
    await a.check_health()
    decided_ms = int(clock.now * 1000)
    clock.now += 1.0
    await b.check_heartbeats()  # B's copy still says online: it tries the same decision, which is refused
    await b.sync()
    assert [(h.get("remote").state, offers(h)) for h in (a, b)] == [("offline", []), ("offline", [])]
    assert [(r.state, r.state_changed_ms) for r in PluginStore(engine).load()] == [("offline", decided_ms)]
    assert await a.heartbeat("remote", token) == "online"
    await b.sync()
    assert b.get("remote").state == "online"
    assert offers(a) == offers(b) != []


async def test_a_fresh_heartbeat_wins_over_an_offline_decision_made_on_an_older_last_seen(
    replicas: tuple[PluginHost, PluginHost], remote_url: str, clock: FakeClock
) -> None:
    """A replica whose copy of the last-seen time is old does not take a plugin offline when
    another replica stored a heartbeat since (the flapping this design removes)."""
    a, b = replicas
    _hosted, token = await a.add_remote("remote", remote_url, CALL_TOKEN)
    clock.now += 5.0
    await b.heartbeat("remote", token)
    clock.now += 2.0  # 7 s since A last saw it; 2 s since B did
    await a.check_heartbeats()  # without a sync: A acts on its stale copy
    await b.sync()
    assert b.get("remote").state == "online"
    await a.sync()
    assert a.get("remote").state == "online"
    assert a.get("remote").last_seen_ms == b.get("remote").last_seen_ms == int((clock.now - 2.0) * 1000)


async def test_upgrade_and_removal_on_one_replica_reach_the_other(
    replicas: tuple[PluginHost, PluginHost], engine: Engine
) -> None:
    """An upgrade on A replaces B's copy (new generation, new version, snapshot fetched afresh);
    a removal through B makes A drop the plugin and its offers."""
    a, b = replicas
    await a.add_entry_point("pool", "scripted", {"version": "1.0"})
    await a.refresh()
    await b.sync()
    first = b.get("pool")
    await a.add_entry_point("pool", "scripted", {"version": "2.0"})
    await b.sync()
    upgraded = b.get("pool")
    assert upgraded is not first
    assert (upgraded.version, upgraded.generation) == ("2.0", a.get("pool").generation)
    assert upgraded.generation != first.generation
    assert offers(b) == offers(a) == []  # the new version has no snapshot yet
    await a.refresh()
    await b.sync()
    assert offers(b) == offers(a) != []
    removed = await b.remove("pool")
    assert removed.state == "removed"
    await a.sync()
    with pytest.raises(PluginNotFound):
        a.get("pool")
    assert offers(a) == offers(b) == []
    assert PluginStore(engine).load() == []


async def test_a_replica_removes_a_plugin_it_has_not_synced_yet(
    replicas: tuple[PluginHost, PluginHost],
) -> None:
    """Removing through a replica that has not seen the registration yet still removes it everywhere."""
    a, b = replicas
    await a.add_entry_point("pool", "scripted", {})
    assert (await b.remove("pool")).state == "removed"
    await a.sync()
    assert a.plugins() == []
    with pytest.raises(PluginNotFound):
        await b.remove("pool")


async def test_a_lookup_on_a_replica_that_has_not_synced_finds_a_new_plugin(
    replicas: tuple[PluginHost, PluginHost],
) -> None:
    """Routes that name a plugin (check, registration codes) find one added through another replica
    moments ago: a miss syncs once before answering not found."""
    a, b = replicas
    await a.add_entry_point("pool", "scripted", {})
    found = await b.lookup("pool")
    assert (found.name, found.plugin is not None) == ("pool", True)
    with pytest.raises(PluginNotFound):
        await b.lookup("nothing")


async def test_only_the_current_registration_stores_a_snapshot(
    replicas: tuple[PluginHost, PluginHost], engine: Engine
) -> None:
    """A data source fetched for a registration replaced or removed meanwhile, or older than the
    stored one, is not stored, so no replica serves offers of a version that is gone."""
    a, b = replicas
    await a.add_entry_point("pool", "scripted", {})
    await b.sync()
    old = b.get("pool")
    data = await a.call("pool", lambda p: p.data_source())
    store = PluginStore(engine)
    assert store.save_snapshot("pool", old.generation, data, 2_000, 5)
    assert not store.save_snapshot("pool", old.generation, data, 1_000, 5)  # older than the stored one
    await a.add_entry_point("pool", "scripted", {"version": "2.0"})  # re-registered: snapshot gone
    report = await b.refresh()  # B still hosts the old registration
    assert report.results["pool"][:1] == (False,)
    assert "re-registered or removed" in report.results["pool"][2]
    assert store.snapshots(["pool"]) == {}
    await a.remove("pool")
    assert not store.save_snapshot("pool", old.generation, data, 3_000, 5)  # removed


async def test_a_plugin_not_loadable_on_a_replica_keeps_the_stored_state_and_offers(
    replicas: tuple[PluginHost, PluginHost],
) -> None:
    """A replica that cannot load a plugin lists it with the stored state and offers, refuses calls
    with the reason, and, as the prober, counts it as failing, so it goes offline on every replica."""
    a, b = replicas
    scripted.ENTRY_POINTS["scripted-here-only"] = scripted.ENTRY_POINTS["scripted"]
    try:
        await a.add_entry_point("pool", "scripted-here-only", {})
        await a.refresh()
    finally:
        del scripted.ENTRY_POINTS["scripted-here-only"]
    await b.sync()
    hosted = b.get("pool")
    assert (hosted.plugin, hosted.state) == (None, "online")
    assert "no plugin entry point 'scripted-here-only'" in b.load_errors["pool"]
    assert offers(b) == offers(a) != []
    with pytest.raises(PluginOffline, match="not loaded on this replica"):
        await b.call("pool", lambda p: p.list_instances())
    for _ in range(3):
        assert await b.probe() == ["pool"]
    await a.sync()
    assert [h.get("pool").state for h in (a, b)] == ["offline", "offline"]
    assert "not loaded on this replica" in a.get("pool").last_error
    assert offers(a) == offers(b) == []


async def test_without_a_store_heartbeats_are_checked_in_memory(remote_url: str, clock: FakeClock) -> None:
    """A host without a database (one process, nothing shared) checks tokens and ages in memory."""
    host = PluginHost(settings=SETTINGS, clock=clock)
    _hosted, token = await host.add_remote("remote", remote_url, CALL_TOKEN)
    with pytest.raises(Unauthorized):
        await host.heartbeat("remote", "not-the-token")
    clock.now += 6.0
    await host.check_health()
    assert host.get("remote").state == "offline"
    assert await host.heartbeat("remote", token) == "online"
    assert host.get("remote").state == "online"
    await host.close()


def test_registrations_keep_through_the_generation_migration(db_url: str) -> None:
    """A plugin stored before connectors_0002 gets the empty generation (hosted alike by every
    replica), and a downgrade keeps the registration without the new columns."""
    engine = make_engine(db_url)
    try:
        with write_transaction(engine) as conn:
            command.upgrade(_config(conn), "connectors_0001")
            conn.execute(
                sa.text(
                    "INSERT INTO connector_plugins VALUES ('old', 'compute', 'remote', 'http://127.0.0.1:9', "
                    "'{}', '1.0', 'online', 'call', 'digest', 1, 1, 1, '')"
                )
            )
        upgrade(engine)
        [row] = PluginStore(engine).load()
        assert (row.name, row.generation, row.reload_code, row.state) == ("old", "", False, "online")
        with write_transaction(engine) as conn:
            command.downgrade(_config(conn), "connectors_0001")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("connector_plugins")}
            assert conn.execute(sa.text("SELECT name FROM connector_plugins")).scalars().all() == ["old"]
        assert "generation" not in columns
    finally:
        engine.dispose()
