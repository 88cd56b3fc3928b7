"""Migrations inside node processes served in the test's event loop: local pools hosted by the node
itself, the cutover hook a task service uses, and a deployment split in two processes (the API in
one, the plugins and the driver in the other) over one database."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from connectors.contract import InstanceSpec, Program
from connectors.host import PluginHost
from connectors.pools.local import COUNTER_PROGRAM
from node.migration.component import CORE
from node.migration.records import Migration
from node.pools.routes import HOST
from node.service import NodeServer, read_admin_token
from tests.support.express import ExpressProcess
from tests.support.migration import Api
from tests.support.nodes import make_node_dir, running_node
from tests.support.polling import eventually

ENDED = {"completed", "rolled_back", "cancelled", "needs_attention"}


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path) -> Iterator[Path]:
    """A node with two local pools at the same site, a running express, and no network plugin."""
    express = ExpressProcess(tmp_path / "express")
    express.start()
    pools = "".join(
        f"""
[[pools]]
name = "{name}"
plugin = "local"
site = "beijing"
options = {{ root = "{tmp_path / name}", slots = 1 }}
"""
        for name in ("a", "b")
    )
    yield make_node_dir(
        tmp_path,
        "node-a",
        extra_toml=f"""{pools}
[connectors]
heartbeat_interval_s = 0.5

[migration]
express_url = "{express.url}"
express_token_path = "{express.token_file}"
chunk_mib = 1
retry_delay_s = 0.2
poll_interval_s = 0.1
supervise_every_s = 0.2
""",
    )
    express.stop()


async def run_counter(host: PluginHost, pool: str) -> str:
    """Start the counter program on a pool the node hosts; its instance id once it runs."""
    spec = InstanceSpec(name="task", region_id="local", flavor_id="local-1")
    instance = await host.call(pool, lambda p: p.create_instance(spec))
    program = Program(
        command=[sys.executable, str(COUNTER_PROGRAM)], env={"COUNTER_STATE_BYTES": str(1 << 20)}
    )
    await host.call(pool, lambda p: p.deploy(instance.id, program))
    await host.call(pool, lambda p: p.start_instance(instance.id))

    async def running() -> bool:
        return (await host.call(pool, lambda p: p.get_instance(instance.id))).state == "running"

    await eventually(running, 30, "the counter running")
    return instance.id


async def pools_online(host: PluginHost) -> bool:
    """Whether pools a and b are online."""
    return {"a", "b"} <= {p.name for p in host.plugins() if p.state == "online"}


def api_of(server: NodeServer, session: aiohttp.ClientSession) -> Api:
    """The migration API of a node served here."""
    return Api(session, server.url, read_admin_token(server.settings))


async def test_cutover_hook_learns_the_new_instance_of_a_task(config: Path) -> None:
    """Between two pools at one site (no path needed) the cutover hook is called once the cutover
    committed, with the task's id and its new pool and instance, before the source is released."""
    async with running_node(config) as server, aiohttp.ClientSession() as session:
        app = server._runner.app  # type: ignore[union-attr]
        host = app[HOST]
        calls: list[tuple[str | None, str | None, str | None, str]] = []

        async def hook(m: Migration) -> None:
            source = await host.call(m.source_pool, lambda p: p.get_instance(m.source_instance))
            calls.append((m.task_id, m.destination_pool, m.destination_instance, source.state))

        app[CORE].hooks.append(hook)
        api = api_of(server, session)
        await eventually(lambda: pools_online(host), 30, "both pools online")
        source = await run_counter(host, "a")
        body = {"source_pool": "a", "instance_id": source, "to_pool": "b", "task_id": "task-7"}
        migration = await api.ok("POST", "/api/v1/migrations", body, 201)
        done = await api.wait(migration["id"], ENDED, 60)
        assert done["state"] == "completed", done
        assert done["path"] is None
        assert calls == [("task-7", "b", done["destination_instance"], "stopped")]


async def test_api_and_driver_in_two_processes_share_the_work(config: Path) -> None:
    """A process with only the API role stores the migration unplanned; the process hosting the plugins
    decides its destination and drives it to the end. The API process cannot plan (503)."""
    async with (
        running_node(config, frozenset({"connectors", "scheduler"})) as worker,
        running_node(config, frozenset({"api"})) as front,
        aiohttp.ClientSession() as session,
    ):
        host = worker._runner.app[HOST]  # type: ignore[union-attr]

        await eventually(lambda: pools_online(host), 30, "both pools online")
        source = await run_counter(host, "a")
        api = api_of(front, session)
        body = {"source_pool": "a", "instance_id": source, "to_pool": "b"}
        status, answer = await api.call("POST", "/api/v1/migrations/plan", body)
        assert (status, answer["error"]) == (503, "connectors_role_needed")
        stored = await api.ok("POST", "/api/v1/migrations", body, 201)
        assert (stored["state"], stored["destination_pool"]) == ("planned", None)
        done = await api.wait(stored["id"], ENDED, 60)
        assert done["state"] == "completed", done
        assert (done["destination_pool"], done["plan"]["chosen"]["offer_id"]) == ("b", "b/local/local-1")
