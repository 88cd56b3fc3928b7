"""The compute gateway with real processes: a `cpnode run` node, `cpnode gateway` hosts joining it by
signed single-use codes, going offline when killed and coming back on restart; refused codes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from federation.canonical import encode
from federation.documents import sign_document
from federation.keys import b64url
from node.config import load_settings
from node.identity import load_identity
from node.pools.gateway import read_code
from node.service import read_admin_token
from tests.support.cli import cpnode
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.polling import eventually
from tests.support.sims import BIN

FAST = """
[connectors]
heartbeat_interval_s = 0.1
refresh_interval_s = 0.2
call_timeout_s = 5

[[pools]]
name = "cpu-1"
plugin = "local"
options = { root = "pools/cpu-1", slots = 1 }
"""


class Node:
    """A `cpnode run` process and its admin API."""

    def __init__(self, config: Path, process: NodeProcess, session: aiohttp.ClientSession) -> None:
        self.config, self.process, self.session = config, process, session
        self.url = process.url
        self.settings = load_settings(config, environ={})
        self.headers = {"Authorization": f"Bearer {read_admin_token(self.settings)}"}

    async def __call__(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        headers = self.headers if auth else {}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def pool(self, name: str) -> dict[str, Any] | None:
        _status, data = await self("GET", "/api/v1/plugins")
        return next((p for p in data["plugins"] if p["name"] == name), None)

    async def code(self, pool: str, ttl_s: int = 600) -> str:
        status, data = await self("POST", "/api/v1/gateway/codes", {"pool": pool, "ttl_s": ttl_s})
        assert status == 201, data
        return str(data["code"])


@pytest.fixture(name="node")
async def fixture_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node process with one in-process local pool and fast heartbeats."""
    config = make_node_dir(tmp_path, "hub", extra_toml=FAST)
    process = NodeProcess(config)
    process.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Node(config, process, session)
    finally:
        process.stop()


@pytest.fixture(name="gateways")
def fixture_gateways() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Gateway processes started by a test; killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def gateway(root: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`cpnode gateway --root ROOT ...` as a subprocess (its stderr in ROOT.log)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(BIN / "cpnode"), "gateway", "--root", str(root), "--slots", "2", *extra]
    with (root.parent / f"{root.name}.log").open("ab") as log:  # the child keeps its own copy
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)


async def test_a_bare_host_joins_by_code_leaves_when_killed_and_returns_on_restart(
    node: Node, gateways: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """`cpnode pools gateway-code` issues a code; `cpnode gateway --code` makes the host a pool online with
    offers; killed, it goes offline and its offers go; restarted without a code (its saved token), it is
    back; removed on the node, its token no longer registers."""
    code, out, _ = cpnode("pools", "gateway-code", "bare-1", "--json", "--config", str(node.config))
    assert code == 0, out
    issued = json.loads(out)
    assert read_code(issued["code"])["node_url"] == node.url
    root = tmp_path / "bare-1"
    gateways.append(gateway(root, "--code", issued["code"]))

    async def online_with_offers() -> bool:
        pool = await node.pool("bare-1")
        return pool is not None and pool["state"] == "online" and pool["offers"] > 0

    await eventually(online_with_offers, timeout_s=60, what="gateway pool online with offers")
    saved = root / "gateway.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["pool"] == "bare-1"
    gateways[0].send_signal(signal.SIGKILL)
    gateways[0].wait(10)

    async def offline() -> bool:
        pool = await node.pool("bare-1")
        return pool is not None and pool["state"] == "offline" and pool["offers"] == 0

    await eventually(offline, timeout_s=30, what="killed gateway offline")
    gateways.append(gateway(root))
    await eventually(online_with_offers, timeout_s=60, what="restarted gateway back online")
    status, _ = await node("DELETE", "/api/v1/plugins/bare-1")
    assert status == 200
    gateways[1].send_signal(signal.SIGTERM)
    gateways[1].wait(20)
    again = gateway(root)
    gateways.append(again)
    assert again.wait(60) == 1  # the node forgot its token: refused, and it says so
    assert b"refused pool bare-1" in (tmp_path / "bare-1.log").read_bytes()
    assert await node.pool("bare-1") is None


async def test_forged_expired_reused_and_foreign_codes_are_refused(
    node: Node, gateways: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A code altered, signed by another key, expired, of another type or used once already is refused with
    its own 4xx code and registers nothing; a registration that fails releases its code for a retry."""
    facts = {"url": "http://127.0.0.1:9", "call_token": "t" * 24}
    good = await node.code("bare-2")
    document = read_code(good)
    key = load_identity(node.settings).signing_key
    now = int(time.time())

    def signed(changes: dict[str, Any], with_key: SigningKey = key) -> str:
        body = {k: v for k, v in {**document, **changes}.items() if k != "signatures"}
        return b64url(encode(sign_document(body, with_key)))

    forged = b64url(encode({**document, "pool": "stolen"}))
    cases = {
        "forged": (forged, 401, "bad_gateway_code"),
        "foreign key": (signed({}, SigningKey.generate()), 401, "bad_gateway_code"),
        "expired": (signed({"issued_ts": now - 900, "expires_ts": now - 300}), 401, "gateway_code_expired"),
        "other type": (signed({"type": "cpnode.pool-registration"}), 401, "bad_gateway_code"),
        "garbage": ("not-a-code", 401, "bad_gateway_code"),
        "in-process name": (signed({"pool": "cpu-1", "code_id": "f" * 32}), 409, "pool_exists"),
    }
    for name, (code, status, error) in cases.items():
        got, body = await node("POST", "/api/v1/gateway/register", {**facts, "code": code}, auth=False)
        assert (got, body["error"]) == (status, error), name
    got, body = await node(
        "POST", "/api/v1/gateway/register", {**facts, "pool": "bare-2", "gateway_token": "x" * 20}
    )
    assert (got, body["error"]) == (401, "bad_gateway_token")
    got, body = await node("POST", "/api/v1/gateway/register", facts)
    assert (got, body["error"]) == (400, "bad_request")
    got, body = await node("POST", "/api/v1/gateway/codes", {"pool": "bare-9"}, auth=False)
    assert got == 401
    # the good code against an unreachable gateway fails, and stays usable
    got, body = await node("POST", "/api/v1/gateway/register", {**facts, "code": good}, auth=False)
    assert got >= 400
    assert await node.pool("bare-2") is None
    gateways.append(gateway(tmp_path / "bare-2", "--code", good))

    async def online() -> bool:
        pool = await node.pool("bare-2")
        return pool is not None and pool["state"] == "online"

    await eventually(online, timeout_s=60, what="gateway online with the released code")
    got, body = await node("POST", "/api/v1/gateway/register", {**facts, "code": good}, auth=False)
    assert (got, body["error"]) == (409, "gateway_code_used")
    reused = gateway(tmp_path / "bare-2-again", "--code", good)
    gateways.append(reused)
    assert reused.wait(60) == 1
    assert b"gateway_code_used" in (tmp_path / "bare-2-again.log").read_bytes()
    _status, data = await node("GET", "/api/v1/plugins")
    assert sorted(p["name"] for p in data["plugins"]) == ["bare-2", "cpu-1"]


def test_a_gateway_without_code_or_saved_token_is_a_usage_error(tmp_path: Path) -> None:
    """`cpnode gateway --root NEW` with nothing to register with exits 2 and says to give --code."""
    result = subprocess.run(
        [str(BIN / "cpnode"), "gateway", "--root", str(tmp_path / "empty")], capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert b"give --code" in result.stderr
    bad = subprocess.run(
        [str(BIN / "cpnode"), "gateway", "--root", str(tmp_path / "x"), "--code", "%%%"],
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert os.path.exists(tmp_path / "x") is False or not (tmp_path / "x" / "gateway.json").exists()
