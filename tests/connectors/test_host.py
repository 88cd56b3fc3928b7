"""The plugin host: broken, crashing and hanging plugins are contained; health, hot-plug, offers, storage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from connectors import host as host_module
from connectors import loading
from connectors.errors import PluginLoadError, PluginNotFound, PluginOffline, PluginTimeout, Unauthorized
from connectors.host import HostSettings, PluginHost
from connectors.identifier import ComputeIdentifier
from connectors.offers import PoolIdentity
from connectors.remote.client import RemotePlugin
from connectors.remote.server import plugin_app
from connectors.serving import start_app
from connectors.store import PluginStore
from tests.connectors import scripted

IDENTITY = PoolIdentity(industry="I", enterprise="91350100M000100Y43", datacenter="SH01")
CALL_TOKEN = "call-token-for-tests-0123"


@pytest.fixture(autouse=True)
def fixture_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Installed entry points plus the scripted test plugins; behaviours reset after each test."""
    real = loading.installed()
    monkeypatch.setattr(loading, "installed", lambda: {**real, **scripted.ENTRY_POINTS})
    yield
    scripted.BEHAVIOUR.clear()


class FakeClock:
    """A settable clock in seconds."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_broken_plugins_are_skipped_with_a_reason() -> None:
    """Import errors, non-plugin targets, bad options and unknown names fail alone, recorded per name."""
    host = PluginHost(settings=HostSettings(call_timeout_s=0.5))
    with pytest.raises(PluginLoadError, match="failed to import"):
        await host.add_entry_point("p1", "missing-module", {})
    with pytest.raises(PluginLoadError, match="does not name"):
        await host.add_entry_point("p2", "not-a-plugin", {})
    with pytest.raises(PluginLoadError, match="rejected its options"):
        await host.add_entry_point("p3", "scripted", {"fail": True})
    with pytest.raises(PluginNotFound, match="installed"):
        await host.add_entry_point("p4", "no-such-entry-point", {})
    assert set(host.load_errors) == {"p1", "p2", "p3", "p4"}
    good = await host.add_entry_point("good", "scripted", {})
    assert good.state == "online"
    assert [p.name for p in host.plugins()] == ["good"]


async def test_a_hanging_plugin_does_not_block_refresh_of_the_others() -> None:
    """One plugin that never answers times out while every other data source is refreshed."""
    host = PluginHost(settings=HostSettings(call_timeout_s=0.3))
    for name in ("a", "b", "stuck"):
        await host.add_entry_point(name, "scripted", {})
    scripted.BEHAVIOUR["stuck"] = "hang"
    started = time.perf_counter()
    report = await host.refresh()
    assert time.perf_counter() - started < 2.0
    assert report.results["a"][0]
    assert report.results["b"][0]
    assert not report.results["stuck"][0]
    assert "did not answer" in report.results["stuck"][2]
    assert {o.pool for o in host.offers()} == {"a", "b"}
    with pytest.raises(PluginTimeout):
        await host.call("stuck", lambda p: p.data_source())


async def test_crashing_plugin_goes_offline_after_three_probes_and_comes_back() -> None:
    """Three failed health probes in a row withdraw a plugin's offers; one good probe restores them."""
    host = PluginHost(settings=HostSettings(call_timeout_s=0.3))
    await host.add_entry_point("flaky", "scripted", {})
    await host.refresh()
    assert len(host.offers()) == 1
    scripted.BEHAVIOUR["flaky"] = "crash"
    for expected in ("online", "online", "offline"):
        await host.check_health()
        assert host.get("flaky").state == expected
    assert host.offers() == []
    with pytest.raises(PluginOffline):
        await host.call("flaky", lambda p: p.list_instances())
    scripted.BEHAVIOUR["flaky"] = "ok"
    await host.check_health()
    assert host.get("flaky").state == "online"
    assert len(host.offers()) == 1


async def test_remote_heartbeats_with_a_fake_clock(engine: Engine) -> None:
    """Missing three heartbeat intervals takes a remote plugin offline in the database; its next
    heartbeat (one stored last-seen update, token checked) restores it."""
    clock = FakeClock()
    store = PluginStore(engine)
    host = PluginHost(store, HostSettings(heartbeat_interval_s=2.0), clock=clock)
    runner, url = await start_app(plugin_app(scripted.ScriptedPool("anchor"), CALL_TOKEN))
    try:
        hosted, token = await host.add_remote("anchor", url, CALL_TOKEN)
        assert await host.heartbeat("anchor", token) == "online"
        with pytest.raises(Unauthorized):
            await host.heartbeat("anchor", "wrong")
        clock.now += 5.9
        await host.check_health()
        assert hosted.state == "online"
        clock.now += 0.2
        await host.check_health()
        assert host.get("anchor").state == "offline"
        assert [(r.state, r.last_error) for r in store.load()] == [("offline", "missed 3 heartbeats")]
        assert await host.heartbeat("anchor", token) == "online"
        assert [(r.state, r.last_seen_ms) for r in store.load()] == [("online", int(clock.now * 1000))]
        assert host.get("anchor").state == "online"
    finally:
        await host.close()
        await runner.cleanup()


async def test_a_registration_cancelled_midway_closes_its_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote plugin's registration cancelled while the host waits for its answer (a node
    stopping mid-request) closes the client it opened: nothing hosted, no session left open."""
    made: list[RemotePlugin] = []

    class Recorded(RemotePlugin):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(host_module, "RemotePlugin", Recorded)
    accepted, release = asyncio.Event(), asyncio.Event()

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()  # reads nothing, answers nothing
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    host = PluginHost(settings=HostSettings(call_timeout_s=20))
    try:
        registering = asyncio.create_task(host.add_remote("stalled", f"http://127.0.0.1:{port}", CALL_TOKEN))
        await asyncio.wait_for(accepted.wait(), 10)
        registering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await registering
        assert host.plugins() == []
        assert len(made) == 1
        with pytest.raises(PluginOffline, match="closed"):  # closed, not left to the garbage collector
            await made[0].health()
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await host.close()


async def test_hot_add_upgrade_and_remove_keep_storage_in_step(engine: Engine) -> None:
    """Adding, upgrading (same name) and removing while running are reflected in memory and the database."""
    store = PluginStore(engine)
    host = PluginHost(store, HostSettings(call_timeout_s=1))
    host.identities["pool"] = IDENTITY
    await host.add_entry_point("pool", "scripted", {"version": "1.0"})
    await host.refresh()
    offer = host.offers()[0]
    assert offer.score_static_milli == 8000
    assert offer.free == 3
    assert offer.price_minor_per_hour == 20000
    identifier = ComputeIdentifier.parse(offer.identifier or "")
    assert identifier.chip == "NVIDIA-A100"
    assert identifier.compute_tflops == 2496
    assert identifier.city == "310000"
    assert list(store.online_snapshots()) == ["pool"]
    upgraded = await host.add_entry_point("pool", "scripted", {"version": "2.0"})
    assert upgraded.version == "2.0"
    assert [r.version for r in store.load()] == ["2.0"]
    assert store.online_snapshots() == {}  # a new version's data is fetched afresh
    await host.remove("pool")
    assert host.plugins() == []
    assert store.load() == []
    assert host.offers() == []
    with pytest.raises(PluginNotFound):
        await host.remove("pool")


async def test_failed_upgrade_keeps_the_running_version() -> None:
    """An upgrade whose new plugin does not start leaves the old one hosted and online."""
    host = PluginHost(settings=HostSettings(call_timeout_s=0.3))
    await host.add_entry_point("pool", "scripted", {"version": "1.0"})
    scripted.BEHAVIOUR["pool"] = "crash"  # the new instance's health check fails
    with pytest.raises(PluginLoadError, match="did not start"):
        await host.add_entry_point("pool", "scripted", {"version": "2.0"})
    scripted.BEHAVIOUR["pool"] = "ok"
    assert host.get("pool").version == "1.0"
    assert host.get("pool").state == "online"


async def test_host_offer_source_declares_a_version_that_follows_the_host() -> None:
    """The node's connectors offer source keeps its content version while nothing changes, and moves
    when a plugin is refreshed or removed, so catalog issuing can skip unchanged polls safely."""
    from node.pools.component import HostOffers

    clock = FakeClock()
    host = PluginHost(settings=HostSettings(call_timeout_s=0.5), clock=clock)
    host.identities["p1"] = IDENTITY
    await host.add_entry_point("p1", "scripted", {})
    await host.refresh()
    source = HostOffers(host, {})
    first = source.content_version()
    assert source.content_version() == first
    offers = await source()
    assert offers
    assert await source() == offers
    clock.now += 5
    await host.refresh(["p1"])
    refreshed = source.content_version()
    assert refreshed != first
    await host.remove("p1")
    assert source.content_version() not in (first, refreshed)
    assert await source() == []
