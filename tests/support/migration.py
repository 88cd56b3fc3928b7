"""Real processes for migration tests, all on 127.0.0.1: the network controller simulator, the data
express, two simulated clouds (pools `bj` at site beijing and `sh` at site shanghai, each with a
fault-injecting proxy in front of its storage endpoint) and a node run as `cpnode run`, whose
migration API the tests drive. The source instance is started through the cloud's own plugin, as a
task would have started it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from connectors.cloudsim.alpha_plugin import AlphaPlugin
from connectors.contract import Instance, InstanceSpec, Program
from connectors.pools.local import COUNTER_PROGRAM
from node.migration.machine import FORWARD
from node.ports import free_port
from tests.express.faultproxy import FaultProxy
from tests.support.express import ExpressProcess
from tests.support.nodes import NodeProcess
from tests.support.polling import eventually
from tests.support.sims import BIN, CONFIGS, SimProcess

MIB = 1 << 20


ALPHA_KEYS = {"access_key": "AK-alpha-demo", "secret_key": "alpha-demo-secret"}


NETSIM_TOKEN = "netsim-demo-token"


SOURCE_REGION, SOURCE_FLAVOR = "cn-north-1", "gpu-a100-8"


STATES_OF_FIGURE_6 = list(FORWARD)


class Cloud:
    """A cloudsim (alpha dialect) process whose storage endpoint is reached through a FaultProxy."""

    def __init__(self, base: Path, name: str, op_delay_ms: int = 150) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.name = name
        inventory = base / f"{name}.toml"
        text = (CONFIGS / "cloudsim" / "alpha.toml").read_text(encoding="utf-8")
        inventory.write_text(
            text.replace("op_delay_ms = 150", f"op_delay_ms = {op_delay_ms}"), encoding="utf-8"
        )
        self.storage = base / f"{name}-storage"
        self.storage.mkdir()
        self.proxy = FaultProxy(0)
        self.proxy.port = free_port()
        argv = [
            str(BIN / "cpnode-cloudsim"),
            "--inventory",
            str(inventory),
            "--storage-dir",
            str(self.storage),
        ]
        self.sim = SimProcess([*argv, "--storage-url", self.proxy.url])
        self.url = ""

    async def start(self) -> None:
        """Start the simulator, then the proxy in front of its storage."""
        self.url = await asyncio.to_thread(self.sim.start)
        self.proxy.target_port = int(self.url.rsplit(":", 1)[1])
        await self.proxy.start()

    @property
    def pid(self) -> int:
        """The simulator's process id."""
        assert self.sim.proc is not None
        return self.sim.proc.pid

    def plugin(self) -> AlphaPlugin:
        """The cloud's plugin, as the test uses it to start the source instance."""
        return AlphaPlugin(self.name, self.url, ALPHA_KEYS["access_key"], ALPHA_KEYS["secret_key"])

    async def faults(self, **values: int) -> None:
        """Set the simulator's injected faults (`latency_ms`, `error_rate_permille`)."""
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self.url}/_sim/faults", json=values) as response,
        ):
            assert response.status == 200, await response.text()

    async def stop(self) -> None:
        """Stop the proxy and the simulator."""
        await self.proxy.close()
        await asyncio.to_thread(self.sim.stop)


class Api:
    """The node's migration API with the admin token."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session, self.url = session, url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, JSON answer) of one call."""
        async with self.session.request(method, self.url + path, json=body, headers=self.headers) as response:
            return response.status, await response.json(content_type=None)

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        """The answer of a call that must succeed with `status`."""
        got, answer = await self.call(method, path, body)
        assert got == status, answer
        return answer

    async def migration(self, migration_id: str) -> dict[str, Any]:
        """One migration with its history."""
        return dict(await self.ok("GET", f"/api/v1/migrations/{migration_id}"))

    async def wait(self, migration_id: str, states: set[str], timeout_s: float = 60) -> dict[str, Any]:
        """Poll the migration until it is in one of `states`."""
        seen: list[dict[str, Any]] = []

        async def reached() -> bool:
            seen.append(await self.migration(migration_id))
            return seen[-1]["state"] in states

        try:
            await eventually(reached, timeout_s, f"migration {migration_id} in {states}")
        except AssertionError as exc:
            last = seen[-1] if seen else None
            raise AssertionError(f"{exc}; last seen: {json.dumps(last, indent=1)[:6000]}") from None
        return seen[-1]

    async def events(self, migration_id: str) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """(arrival time, event) of the migration's event stream until it ends."""
        url = f"{self.url}/api/v1/migrations/{migration_id}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
        async with self.session.get(url, headers=self.headers, timeout=timeout) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    yield time.monotonic(), json.loads(line[5:])


@dataclass
class World:
    """The processes of one migration test and the node's API."""

    base: Path
    netsim: SimProcess
    express: ExpressProcess
    clouds: dict[str, Cloud]
    node: NodeProcess
    api: Api
    started: list[Instance] = field(default_factory=list)

    async def run_source(self, pool: str = "bj", state_bytes: int = 8 * MIB) -> Instance:
        """Start the counter program (with `state_bytes` of extra state) on `pool`; wait until it runs."""
        plugin = self.clouds[pool].plugin()
        await plugin.start()
        try:
            spec = InstanceSpec(
                name=f"task-{len(self.started)}", region_id=SOURCE_REGION, flavor_id=SOURCE_FLAVOR
            )
            instance = await plugin.create_instance(spec)
            program = Program(
                command=[sys.executable, str(COUNTER_PROGRAM)], env={"COUNTER_STATE_BYTES": str(state_bytes)}
            )
            await plugin.deploy(instance.id, program)
            await plugin.start_instance(instance.id)

            async def running() -> bool:
                return (await plugin.get_instance(instance.id)).state == "running"

            await eventually(running, 30, "the source program running")
            self.started.append(instance)
            return await plugin.get_instance(instance.id)
        finally:
            await plugin.close()

    async def instance(self, pool: str, instance_id: str) -> Instance:
        """An instance as its cloud reports it now."""
        plugin = self.clouds[pool].plugin()
        await plugin.start()
        try:
            return await plugin.get_instance(instance_id)
        finally:
            await plugin.close()

    async def instances(self, pool: str) -> list[Instance]:
        """The cloud's instances that are not deleted."""
        plugin = self.clouds[pool].plugin()
        await plugin.start()
        try:
            return await plugin.list_instances()
        finally:
            await plugin.close()

    async def logs(self, pool: str, instance_id: str) -> str:
        """The program's output so far."""
        plugin = self.clouds[pool].plugin()
        await plugin.start()
        try:
            return (await plugin.logs(instance_id, 0, 1 << 20)).data().decode()
        finally:
            await plugin.close()

    async def netsim_call(self, method: str, path: str) -> Any:
        """A call to the network simulator's API (its control plane included)."""
        headers = {"Authorization": f"Bearer {NETSIM_TOKEN}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(method, self.netsim.url + path) as response,
        ):
            assert response.status < 300, await response.text()
            return await response.json()

    def start_node(self) -> None:
        """(Re)start the node process."""
        self.node = NodeProcess(self.node.config)
        url = self.node.start()
        self.api.url = url

    async def api_wait(self, check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
        """Poll `check` until true; AssertionError naming `what` after `timeout_s`."""
        await eventually(check, timeout_s, what)

    async def start(self, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        """Ask for a migration."""
        return dict(await self.api.ok("POST", "/api/v1/migrations", body, status))


MIGRATION_SETTINGS: dict[str, Any] = {
    "network": "net",
    "workers": 4,
    "chunk_mib": 1,
    "checkpoint_timeout_s": 30,
    "start_timeout_s": 30,
    "step_attempts": 3,
    "retry_delay_s": 0.2,
    "poll_interval_s": 0.1,
    "supervise_every_s": 0.2,
    "lease_ttl_s": 5,
}


def node_toml(
    express: ExpressProcess, clouds: dict[str, Cloud], netsim_url: str, migration: dict[str, Any]
) -> str:
    """The node's pools (the two clouds, the network plugin) and its [migration] section."""
    pools = "".join(
        f"""
[[pools]]
name = "{name}"
plugin = "cloudsim-alpha"
site = "{site}"
options = {{ url = "{cloud.url}", access_key = "{ALPHA_KEYS["access_key"]}", secret_key = "{ALPHA_KEYS["secret_key"]}" }}
"""
        for (name, cloud), site in zip(clouds.items(), ("beijing", "shanghai"), strict=True)
    )
    settings = {**MIGRATION_SETTINGS, **migration}
    migration_lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    return f"""
[connectors]
heartbeat_interval_s = 0.5
refresh_interval_s = 5
call_timeout_s = 20
{pools}
[[pools]]
name = "net"
plugin = "netsim"
options = {{ url = "{netsim_url}", token = "{NETSIM_TOKEN}" }}

[migration]
express_url = "{express.url}"
express_token_path = "{express.token_file}"
{migration_lines}
"""
