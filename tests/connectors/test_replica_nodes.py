"""Two replicas of ONE node running only the `connectors` role over one database, as the availability
plan deploys them (k = 2 behind one Service): in-process servers and `cpnode run` processes, on
both backends. A loopback router stands in for the Service."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.config import load_settings
from node.service import NodeServer, read_admin_token
from tests.connectors.router import ServiceRouter
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.polling import eventually
from tests.support.sims import SimProcess

ROLES = frozenset({"connectors"})
# Heartbeats every 0.5 s, offline after six missed: a 3 s window, wide enough that a busy test
# machine's pauses are not missed heartbeats (the steady phase asserts that nothing flaps; a 1.5 s
# window flapped at load 10-11).
FAST = """
[connectors]
heartbeat_interval_s = 0.5
missed_heartbeats = 6
refresh_interval_s = 0.2
call_timeout_s = 5
"""
ALPHA_REQUESTS_PER_CALL = (
    5  # a data-source call (and a health probe) of the alpha adapter: 4 one-page lists + metrics
)


def alpha_pool(url: str) -> str:
    return f"""
[[pools]]
name = "gpu"
plugin = "cloudsim-alpha"
options = {{ url = "{url}", access_key = "AK-alpha-demo", secret_key = "alpha-demo-secret" }}
"""


@dataclass
class View:
    """What one replica shows: plugin states by name and its offers."""

    states: dict[str, str]
    offers: list[dict[str, Any]]

    def offered(self, pool: str) -> bool:
        return any(offer["pool"] == pool for offer in self.offers)


class Replica:
    """One replica's admin API."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session, self.url, self.headers = session, url, {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, headers=self.headers) as response:
            return response.status, await response.json()

    async def view(self) -> View:
        status, plugins = await self.call("GET", "/api/v1/plugins")
        assert status == 200
        status, pools = await self.call("GET", "/api/v1/pools")
        assert status == 200
        return View({p["name"]: p["state"] for p in plugins["plugins"]}, pools["offers"])

    async def work(self) -> dict[str, int]:
        _status, plugins = await self.call("GET", "/api/v1/plugins")
        return {k: v for k, v in plugins["replica"].items() if isinstance(v, int)}


async def both(a: Replica, b: Replica, name: str, state: str | None, offered: bool) -> bool:
    """Whether A and B agree: `name` in `state` (None: not listed), offered or not, identical offers."""
    va, vb = await a.view(), await b.view()
    return (
        va.states.get(name) == vb.states.get(name) == state
        and va.offers == vb.offers
        and va.offered(name) == offered
    )


def start_plugin(node_url: str, token_file: Path, root: Path) -> subprocess.Popen[bytes]:
    """A real out-of-process plugin (the local pool) that registers and heartbeats at `node_url`."""
    argv = [sys.executable, "-m", "connectors.remote", "local", "edge", "--node", node_url]
    argv += ["--admin-token-file", str(token_file), "--option", f"root={root}", "--option", "slots=1"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def remote_plugin_scenario(
    a: Replica,
    b: Replica,
    start: Callable[[str], subprocess.Popen[bytes]],
    procs: list[subprocess.Popen[bytes]],
) -> None:
    """Register through A, heartbeat only to B; kill, restart, remove through B; both agree each time."""
    router = ServiceRouter(register_to=a.url, beat_to=b.url)
    url = await router.start()
    try:
        procs.append(start(url))
        await eventually(lambda: both(a, b, "edge", "online", True), 30, "online with offers on both")
        registered = router.counts[("register", a.url)]
        # A registered it (a retry after a slow answer may send it twice); every heartbeat went to B
        assert registered >= 1
        beats = router.counts[("heartbeat", b.url)]

        async def steady() -> bool:
            views = [await a.view(), await b.view()]
            # online on both at every look, A included, which never receives a heartbeat
            assert [v.states["edge"] for v in views] == ["online", "online"]
            return router.counts[("heartbeat", b.url)] >= beats + 10

        await eventually(steady, 20, "ten more heartbeats to B")
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)
        killed = time.monotonic()
        await eventually(lambda: both(a, b, "edge", "offline", False), 10, "offline on both")
        # window: 6 missed beats of 0.5 s plus a round; generous for a loaded machine
        assert time.monotonic() - killed < 12.0
        procs.append(start(url))
        await eventually(lambda: both(a, b, "edge", "online", True), 30, "back online on both")
        assert router.counts[("register", a.url)] > registered
        procs[-1].send_signal(signal.SIGKILL)  # stopped first, so it cannot register again
        procs[-1].wait(10)
        status, removed = await b.call("DELETE", "/api/v1/plugins/edge")
        assert (status, removed["state"]) == (200, "removed")
        await eventually(lambda: both(a, b, "edge", None, False), 10, "removal through B reaching A")
    finally:
        await router.close()


async def refresh_once_scenario(a: Replica, b: Replica, sim: SimProcess) -> tuple[Replica, Replica]:
    """Over several rounds one replica refreshes and one probes (each under its own lease: the two
    leases need not fall to the same replica), and the simulator counts exactly their calls, not
    twice as many; returns (the refreshing replica, the other)."""
    await eventually(lambda: both(a, b, "gpu", "online", True), 30, "gpu online with offers on both")
    w0 = {r.url: await r.work() for r in (a, b)}
    s0 = await sim_calls(sim)

    async def rounds_done() -> bool:
        works = {r.url: await r.work() for r in (a, b)}
        refreshed = [works[url]["refresh_rounds"] - w0[url]["refresh_rounds"] for url in works]
        synced = [works[url]["health_rounds"] - w0[url]["health_rounds"] for url in works]
        return max(refreshed) >= 6 and min(synced) >= 3

    await eventually(rounds_done, 30, "six refresh rounds and three health rounds on each replica")
    s1 = await sim_calls(sim)
    w1 = {r.url: await r.work() for r in (a, b)}
    delta = {url: {k: w1[url][k] - w0[url][k] for k in w0[url]} for url in w0}
    holder, other = (a, b) if delta[a.url]["refresh_rounds"] else (b, a)
    assert delta[other.url]["refresh_rounds"] == 0
    assert delta[other.url]["data_source_calls"] == 0
    assert delta[other.url]["refresh_rounds_skipped"] >= 3
    assert delta[other.url]["health_rounds"] >= 3  # it still syncs: it serves the same offers
    probes = sorted(delta[url]["probes"] for url in delta)  # by the probe lease's holder only
    assert probes[0] == 0, delta
    assert probes[1] > 0, delta
    calls = sum(delta[url]["data_source_calls"] + delta[url]["probes"] for url in delta)
    # Calls in flight at either end of the window may be counted on one side only (several, on a
    # busy machine); a second replica calling too would double the count, far past this tolerance.
    expected = ALPHA_REQUESTS_PER_CALL * calls
    assert abs((s1 - s0) - expected) <= max(4 * ALPHA_REQUESTS_PER_CALL, expected // 4), (s1 - s0, calls)
    return holder, other


async def sim_calls(sim: SimProcess) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}/_sim/stats") as response:
        return int((await response.json())["calls"])


@pytest.fixture(name="procs")
def fixture_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Plugin processes a test starts; any still running are killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@contextlib.asynccontextmanager
async def replicas(config: Path) -> AsyncIterator[list[NodeServer]]:
    """Two in-process replicas of the node of `config`, stopped when the block ends, in the test's
    own task as `running_node` does. (A stop that waited forever on a cancelled connectors round
    was a lost cancellation: see tests/connectors/test_cancel_not_lost.py.)"""
    servers: list[NodeServer] = []
    try:
        for _ in range(2):
            server = NodeServer(load_settings(config, environ={}), ROLES)
            await server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            await server.stop()


async def test_in_process_replicas_agree_on_a_remote_plugin(
    tmp_path: Path, db_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A plugin process registering through A and heartbeating only to B is online on both with
    identical offers; SIGKILLed it goes offline on both within the window, restarted it returns on
    both, and its removal through B reaches A."""
    config = make_node_dir(tmp_path, "hub", db_url=db_url, extra_toml=FAST)
    async with replicas(config) as (a, b), aiohttp.ClientSession() as session:
        token = read_admin_token(a.settings)
        token_file = a.settings.path(a.settings.keys.admin_token_path)
        await remote_plugin_scenario(
            Replica(session, a.url, token),
            Replica(session, b.url, token),
            lambda url: start_plugin(url, token_file, tmp_path / "edge-root"),
            procs,
        )


async def test_in_process_replicas_refresh_a_pool_once_per_round(
    tmp_path: Path, db_url: str, alpha_sim: SimProcess
) -> None:
    """One cloudsim pool is probed and refreshed by one replica per round (the simulator counts
    only its calls) while both serve the same offers; when that replica stops, the other takes over."""
    config = make_node_dir(tmp_path, "hub", db_url=db_url, extra_toml=FAST + alpha_pool(alpha_sim.url))
    async with replicas(config) as servers, aiohttp.ClientSession() as session:
        a, b = servers
        token = read_admin_token(a.settings)
        ra, rb = Replica(session, a.url, token), Replica(session, b.url, token)
        holder, other = await refresh_once_scenario(ra, rb, alpha_sim)
        stopping = next(s for s in servers if s.url == holder.url)
        await stopping.stop()  # a clean stop gives the leases up at once
        servers.remove(stopping)
        before = await other.work()

        async def taken_over() -> bool:
            work = await other.work()
            return (
                work["refresh_rounds"] >= before["refresh_rounds"] + 2 and work["probes"] > before["probes"]
            )

        await eventually(taken_over, 10, "the other replica taking over")
        assert (await other.view()).offered("gpu")


async def test_cpnode_run_replicas_share_plugins_and_refresh_once(
    tmp_path: Path, db_url: str, alpha_sim: SimProcess, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The same with two `cpnode run --roles connectors` processes of one node: a remote plugin
    registered through one and heartbeating to the other, and a cloudsim pool refreshed by one."""
    config = make_node_dir(tmp_path, "hub", db_url=db_url, extra_toml=FAST + alpha_pool(alpha_sim.url))
    processes = [NodeProcess(config, roles="connectors") for _ in range(2)]
    try:
        urls = [process.start() for process in processes]
        settings = load_settings(config, environ={})
        token = read_admin_token(settings)
        token_file = settings.path(settings.keys.admin_token_path)
        async with aiohttp.ClientSession() as session:
            a, b = (Replica(session, url, token) for url in urls)
            await refresh_once_scenario(a, b, alpha_sim)
            await remote_plugin_scenario(
                a, b, lambda url: start_plugin(url, token_file, tmp_path / "edge-root"), procs
            )
    finally:
        for process in processes:
            process.stop()
