"""Real processes for migration tests, all on 127.0.0.1: the network controller simulator, the data
express, two simulated clouds (pools `bj` at site beijing and `sh` at site shanghai, each with a
fault-injecting proxy in front of its storage endpoint) and a node run as `cpnode run`, whose
migration API the tests drive. The source instance is started through the cloud's own plugin, as a
task would have started it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.config import load_settings
from node.runfile import read_admin_token
from tests.support.express import ExpressProcess
from tests.support.migration import (
    Api,
    Cloud,
    World,
    node_toml,
)
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.polling import eventually
from tests.support.sims import BIN, CONFIGS, SimProcess


@pytest.fixture(name="world_options")
def fixture_world_options() -> dict[str, Any]:
    """Options of the world fixture a test may override: [migration] settings, cloud op delays."""
    return {"migration": {}, "op_delay_ms": {"bj": 150, "sh": 150}}


@pytest.fixture(name="world")
async def fixture_world(
    tmp_path: Path, world_options: dict[str, Any], request: pytest.FixtureRequest
) -> AsyncIterator[World]:
    """Every process of a migration test running, the node's pools online (its database on
    PostgreSQL when the options say `postgres`)."""
    db_url = str(request.getfixturevalue("postgres_url")) if world_options.get("postgres") else None
    netsim = SimProcess([str(BIN / "cpnode-netsim"), "--config", str(CONFIGS / "network" / "default.toml")])
    express = ExpressProcess(tmp_path / "express")
    clouds = {
        name: Cloud(tmp_path / "clouds", name, world_options["op_delay_ms"][name]) for name in ("bj", "sh")
    }
    worlds: list[World] = []
    session = aiohttp.ClientSession()
    try:
        await asyncio.to_thread(netsim.start)
        await asyncio.to_thread(express.start)
        for cloud in clouds.values():
            await cloud.start()
        config = make_node_dir(
            tmp_path,
            "node-a",
            db_url=db_url,
            extra_toml=node_toml(express, clouds, netsim.url, world_options["migration"]),
        )
        node = NodeProcess(config)
        try:
            url = await asyncio.to_thread(node.start)
        except Exception:
            node.kill()
            raise
        api = Api(session, url, read_admin_token(load_settings(config, environ={})))
        world = World(tmp_path, netsim, express, clouds, node, api)
        worlds.append(world)

        async def online() -> bool:
            plugins = (await api.ok("GET", "/api/v1/plugins"))["plugins"]
            return {p["name"] for p in plugins if p["state"] == "online"} >= {"bj", "sh", "net"}

        await eventually(online, 60, "the pools and the network plugin online")
        yield world
    finally:
        if node is not None:
            await asyncio.to_thread(world.node.stop) if "world" in locals() else await asyncio.to_thread(
                node.stop
            )
        await session.close()
        for cloud in clouds.values():
            await cloud.stop()
        await asyncio.to_thread(express.stop)
        await asyncio.to_thread(netsim.stop)
        shutil.rmtree(tmp_path / "clouds", ignore_errors=True)
