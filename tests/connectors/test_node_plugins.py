"""Connectors inside a real node: pools become offers, remote plugins hot-plug, heartbeats, CLI and errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.identifier import ComputeIdentifier, RegistrationClaim
from federation.canonical import decode
from federation.catalog import check_offer
from federation.documents import verify_document
from federation.keys import b64url_decode, key_id
from node.config import ConfigError, load_settings
from node.identity import load_identity
from node.service import NodeServer, read_admin_token
from tests.support.cli import cpnode
from tests.support.nodes import NodeProcess, make_node_dir, running_node
from tests.support.polling import eventually
from tests.support.sims import SimProcess

IDENTITY = '{ industry = "I", enterprise = "91350100M000100Y43", datacenter = "BJ01" }'
FAST = """
[connectors]
heartbeat_interval_s = 0.1
refresh_interval_s = 0.2
call_timeout_s = 5
"""


def local_pool_toml(name: str = "cpu-1") -> str:
    return f"""
[[pools]]
name = "{name}"
plugin = "local"
site = "beijing"
options = {{ root = "pools/{name}", slots = 2 }}
identity = {IDENTITY}
"""


class Api:
    """The node's admin API."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session, self.url, self.headers = session, url, {"Authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        headers = self.headers if auth else {}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def own_offers(self) -> list[dict[str, Any]]:
        status, data = await self("GET", "/api/v1/offers")
        assert status == 200
        return [row for row in data["offers"] if row["source"] == "own:connectors"]


@pytest.fixture(name="node")
async def fixture_node(tmp_path: Path) -> AsyncIterator[tuple[NodeServer, Api]]:
    """A node in this event loop with one local pool and fast heartbeats."""
    config = make_node_dir(tmp_path, "hub", extra_toml=FAST + local_pool_toml())
    async with running_node(config) as server, aiohttp.ClientSession() as session:
        yield server, Api(session, server.url, read_admin_token(server.settings))


async def test_pool_offers_carry_identifiers_and_measured_scores(node: tuple[NodeServer, Api]) -> None:
    """A configured local pool's offers reach the node's offer view with identifier, score and site."""
    _server, api = node
    offers = await api.own_offers()
    assert {o["id"] for o in offers} == {"cpu-1/local/local-1", "cpu-1/local/local-2"}
    for index, offer in enumerate(offers):
        check_offer(offer, index)  # what a partner's catalog acceptance applies
    one = next(o for o in offers if o["id"] == "cpu-1/local/local-1")
    assert one["networks"] == ["beijing"]
    assert one["metric_score"] > 0
    identifier = ComputeIdentifier.parse(one["compute_id"])
    assert identifier.resource == "CPU"
    assert identifier.datacenter == "BJ01"


async def test_registration_code_is_signed_by_the_node(node: tuple[NodeServer, Api]) -> None:
    """`pools register` yields a code whose document verifies with the node's key and names the pool."""
    server, api = node
    status, data = await api("POST", "/api/v1/pools/cpu-1/registration", {})
    assert status == 201
    document = decode(b64url_decode(data["code"]))
    verify_key = load_identity(server.settings).signing_key.verify_key
    assert verify_document(document, "hub", {key_id(verify_key): verify_key}) == key_id(verify_key)
    claim = RegistrationClaim.from_document(document, now_ts=document["issued_ts"])
    assert claim.pool == "cpu-1"
    assert claim.identifier == data["identifier"]


async def test_bad_requests_are_4xx_and_change_nothing(node: tuple[NodeServer, Api]) -> None:
    """No admin token, malformed bodies, unknown plugins and wrong heartbeat tokens are refused with codes."""
    _server, api = node
    status, body = await api("POST", "/api/v1/plugins", {"name": "x", "entry_point": "local"}, auth=False)
    assert status == 401
    status, body = await api("POST", "/api/v1/plugins", {"name": "Bad Name!", "entry_point": "local"})
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await api("POST", "/api/v1/plugins", {"name": "x", "entry_point": "no-such-plugin"})
    assert (status, body["error"]) == (404, "plugin_not_found")
    status, body = await api("POST", "/api/v1/plugins", {"name": "x", "entry_point": "local", "options": {}})
    assert (status, body["error"]) == (422, "plugin_load_failed")
    status, body = await api("POST", "/api/v1/plugins/cpu-1/heartbeat", {}, auth=True)
    assert (status, body["error"]) == (404, "plugin_not_found")  # cpu-1 is in-process: it has no heartbeat
    status, body = await api("DELETE", "/api/v1/plugins/nope")
    assert status == 404
    status, body = await api("GET", "/api/v1/plugins")
    assert [p["name"] for p in body["plugins"]] == ["cpu-1"]
    assert set(body["load_errors"]) == {"x"}


@pytest.fixture(name="plugin_process")
def fixture_plugin_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Plugin service processes started by a test; all are killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def start_remote_local_pool(node: NodeServer, name: str, root: Path) -> subprocess.Popen[bytes]:
    token_file = node.settings.path(node.settings.keys.admin_token_path)
    argv = [
        sys.executable,
        "-m",
        "connectors.remote",
        "local",
        name,
        "--node",
        node.url,
        "--admin-token-file",
        str(token_file),
        "--option",
        f"root={root}",
        "--option",
        "slots=1",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_remote_plugin_heartbeat_loss_withdraws_offers_and_recovery_restores_them(
    node: tuple[NodeServer, Api], plugin_process: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A plugin process registers; killed, it misses 3 heartbeats and its offers go; restarted, they return."""
    server, api = node

    async def remote_state() -> str | None:
        _status, data = await api("GET", "/api/v1/plugins")
        return next((p["state"] for p in data["plugins"] if p["name"] == "remote-1"), None)

    async def offered() -> bool:
        return any(o["pool"] == "remote-1" for o in await api.own_offers())

    plugin_process.append(start_remote_local_pool(server, "remote-1", tmp_path / "remote-root"))

    async def online_with_offers() -> bool:
        return await remote_state() == "online" and await offered()

    await eventually(online_with_offers, timeout_s=30, what="remote plugin online with offers")
    plugin_process[0].send_signal(signal.SIGKILL)
    plugin_process[0].wait(10)

    async def withdrawn() -> bool:
        return await remote_state() == "offline" and not await offered()

    await eventually(withdrawn, what="offers withdrawn after missed heartbeats")
    assert any(o["pool"] == "cpu-1" for o in await api.own_offers())  # the in-process pool is unaffected
    plugin_process.append(start_remote_local_pool(server, "remote-1", tmp_path / "remote-root"))
    await eventually(online_with_offers, timeout_s=30, what="remote plugin back online")
    status, _ = await api("DELETE", "/api/v1/plugins/remote-1")
    assert status == 200
    assert not await offered()


async def test_a_hanging_remote_plugin_does_not_block_the_node(
    node: tuple[NodeServer, Api], plugin_process: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A stopped (SIGSTOP) plugin process times out its calls while the node keeps answering."""
    server, api = node
    plugin_process.append(start_remote_local_pool(server, "frozen", tmp_path / "frozen-root"))

    async def online() -> bool:
        _status, data = await api("GET", "/api/v1/plugins")
        return any(p["name"] == "frozen" and p["state"] == "online" for p in data["plugins"])

    await eventually(online, timeout_s=30, what="plugin online")
    os.kill(plugin_process[0].pid, signal.SIGSTOP)
    try:

        async def offline() -> bool:
            return not await online()

        await eventually(offline, what="frozen plugin offline")
        started = asyncio.get_running_loop().time()
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/healthz") as response:
            assert response.status == 200
        assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        os.kill(plugin_process[0].pid, signal.SIGCONT)


def test_cli_hot_plugs_into_a_running_node_process(tmp_path: Path, alpha_sim: SimProcess) -> None:
    """`cpnode plugins add|list|check|remove` and `pools list` work against a real `cpnode run` process."""
    config = make_node_dir(tmp_path, "edge", extra_toml=FAST + local_pool_toml("cpu-edge"))
    process = NodeProcess(config)
    process.start()
    try:
        c = str(config)
        code, out, _ = cpnode(
            "plugins",
            "add",
            "gpu-alpha",
            "cloudsim-alpha",
            "--option",
            f"url={alpha_sim.url}",
            "--option",
            "access_key=AK-alpha-demo",
            "--option",
            "secret_key=alpha-demo-secret",
            "--config",
            c,
        )
        assert code == 0, out
        assert "online with 4 offer(s)" in out
        code, out, _ = cpnode("plugins", "check", "gpu-alpha", "--config", c)
        assert code == 0, out
        assert "all checks passed" in out
        code, out, _ = cpnode("pools", "list", "--json", "--config", c)
        assert code == 0
        assert "gpu-alpha/cn-north-1/gpu-h100-8" in out
        code, out, _ = cpnode(
            "plugins", "add", "bad", "cloudsim-beta", "--option", "url=http://127.0.0.1:1", "--config", c
        )
        assert code == 1  # the platform is unreachable: refused, nothing hosted
        code, out, _ = cpnode("plugins", "remove", "gpu-alpha", "--config", c)
        assert code == 0
        code, out, _ = cpnode("plugins", "list", "--json", "--config", c)
        assert '"gpu-alpha"' not in out
        assert '"cpu-edge"' in out
    finally:
        process.stop()


def test_config_rejects_bad_pools(tmp_path: Path) -> None:
    """Duplicate pool names and a wrong enterprise check character are config errors naming the path."""
    config = make_node_dir(tmp_path, "cfg", extra_toml=local_pool_toml("p") + local_pool_toml("p"))
    code, _, _ = cpnode("status", "--config", str(config))
    assert code == 2
    bad = make_node_dir(tmp_path, "cfg2", extra_toml=local_pool_toml("q").replace("Y43", "Y44"))
    with pytest.raises(ConfigError, match=r"pools\.0\.identity\.enterprise"):
        load_settings(bad, environ={})
