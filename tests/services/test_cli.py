"""`cpnode services` against a node with replicas running: create, list, show, resolve, pin,
scale, delete, with --json and as tables; malformed weights refused before anything is sent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from node.resources import config_file
from node.tasks.spec import read_task_spec
from tests.support.cli import cpnode_async
from tests.support.polling import eventually
from tests.support.services import replica_spec, service, serving, steered_node


async def run_json(config: Path, *args: str) -> Any:
    """`cpnode ARGS --json`, which must succeed; its parsed output."""
    done = await cpnode_async(*args, "--json", config=config)
    assert done.code == 0, done.output
    return json.loads(done.out)


def test_the_shipped_replica_spec_names_the_shipped_program() -> None:
    """configs/tasks/echo-replica.toml fetches echo_replica.py with its true size and SHA-256."""
    program = config_file("tasks", "echo_replica.py").read_bytes()
    (only,) = read_task_spec(config_file("tasks", "echo-replica.toml")).inputs
    assert (only.size_bytes, only.sha256) == (len(program), hashlib.sha256(program).hexdigest())


async def test_services_commands(tmp_path: Path) -> None:
    """Every services command works against the running node and agrees with the API."""
    async with steered_node(tmp_path) as node:
        config = tmp_path / "a" / "node.toml"
        spec = tmp_path / "echo.json"
        spec.write_text(json.dumps(replica_spec()))
        created = await run_json(
            config,
            "services",
            "create",
            "echo",
            "--spec",
            str(spec),
            "--replicas",
            "2",
            "--consumer",
            "alice",
        )
        assert created["replicas"] == 2
        await serving(node, "echo", 2)
        status = await cpnode_async("status", config=config)
        assert "1 (2 replicas)" in status.out, status.output
        listed = await run_json(config, "services", "list")
        assert [s["name"] for s in listed] == ["echo"]
        shown = await cpnode_async("services", "show", "echo", config=config)
        assert shown.code == 0, shown.output
        assert "2 wanted, at most 2" in shown.out
        resolved = await run_json(config, "services", "resolve", "echo", "--site", "guangzhou")
        far = resolved["replicas"][0]["replica"]
        table = await cpnode_async("services", "resolve", "echo", config=config)
        assert table.code == 0, table.output
        assert "for users at beijing" in table.out
        pinned = await run_json(config, "services", "pin", "echo", f"{far}=0")
        assert {r["replica"]: r["weight"] for r in pinned["replica_list"]}[far] == 0
        bad = await cpnode_async("services", "pin", "echo", f"{far}=heavy", config=config)
        assert bad.code == 2
        assert "whole number" in bad.output
        refused = await cpnode_async("services", "pin", "echo", f"{far}=20000", config=config)
        assert refused.code != 0
        assert "weight" in refused.output
        unknown = await cpnode_async("services", "show", "nope", config=config)
        assert unknown.code != 0
        assert "no service 'nope'" in unknown.output
        scaled = await run_json(config, "services", "scale", "echo", "1")
        assert scaled["replicas"] == 1
        await eventually(lambda: _replicas(node, 1), 30, "the service scaled down to one replica")
        deleted = await run_json(config, "services", "delete", "echo")
        assert deleted == {"deleted": "echo"}
        assert await run_json(config, "services", "list") == []


async def _replicas(node: Any, count: int) -> bool:
    return len((await service(node, "echo"))["replica_list"]) == count


async def test_a_consumer_token_sees_its_own_services_only(tmp_path: Path) -> None:
    """alice's token creates and manages alice's services; bob's token sees none of them (404 as a
    missing one) and cannot create one for alice."""
    async with steered_node(tmp_path) as node:
        await node.call("POST", "/api/v1/consumers", {"id": "bob"})
        tokens = {}
        for consumer in ("alice", "bob"):
            status, body = await node.call("POST", f"/api/v1/consumers/{consumer}/tokens", {})
            assert status == 201, body
            tokens[consumer] = body["token"]
        body = {"name": "mine", "spec": replica_spec(), "replicas": 1}
        status, created = await node.call("POST", "/api/v1/services", body, token=tokens["alice"])
        assert status == 201, created
        assert created["consumer"] == "alice"
        status, listing = await node.call("GET", "/api/v1/services", token=tokens["bob"])
        assert (status, listing["services"]) == (200, [])
        for method, path, payload in (
            ("GET", "/api/v1/services/mine", None),
            ("GET", "/api/v1/services/mine/resolve", None),
            ("POST", "/api/v1/services/mine/scale", {"replicas": 1}),
            ("DELETE", "/api/v1/services/mine", None),
        ):
            status, answer = await node.call(method, path, payload, token=tokens["bob"])
            assert (status, answer["error"]) == (404, "unknown_service"), (method, path, answer)
        status, answer = await node.call(
            "POST", "/api/v1/services", {**body, "name": "theirs", "consumer": "alice"}, token=tokens["bob"]
        )
        assert (status, answer["error"]) == (403, "forbidden")
        status, listing = await node.call("GET", "/api/v1/services", token=tokens["alice"])
        assert [s["name"] for s in listing["services"]] == ["mine"]
