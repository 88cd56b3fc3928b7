"""The command line of accounts against two real nodes: the operator verifies and suspends a
consumer and reads the audit trail with `cpnode accounts`, creates users with `cpnode users`; the
consumer makes a client key, gets its home node's assertion for the partner and reads its task's
log at the partner with `cpnode accounts call`, which is refused once the consumer is suspended."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.support.cli import CliResult, cpnode_async
from tests.support.tasks import Node, pair, python_task


async def run(node: Node, *args: str) -> CliResult:
    """`cpnode ARGS --config <node>`."""
    return await cpnode_async(*args, config=node.server.settings.base_dir / "node.toml")


async def run_json(node: Node, *args: str) -> Any:
    """`cpnode ARGS --json --config <node>`, which must succeed; its parsed output."""
    done = await run(node, *args, "--json")
    assert done.code == 0, done.output
    return json.loads(done.out)


async def test_operator_and_consumer_use_accounts_from_the_command_line(tmp_path: Path) -> None:
    """See the module docstring: each command succeeds or is refused naming why."""
    async with pair(tmp_path) as p:
        a, b = p.buyer, p.seller
        task = await a.submit(python_task("print('cli at b')"))
        done = await a.wait(task["id"], timeout_s=60)
        token_file = tmp_path / "alice.token"
        token_file.write_text((await run_json(a, "consumers", "token", "alice"))["token"])

        verified = await run_json(a, "accounts", "verify", "alice", "--note", "passport")
        assert verified["verification"]["status"] == "verified"
        key = tmp_path / "alice.key"
        made = await cpnode_async("accounts", "key", "--out", str(key))
        assert made.code == 0, made.output
        assert key.stat().st_mode & 0o077 == 0
        again = await cpnode_async("accounts", "key", "--out", str(key))
        assert again.code == 2, again.output
        assertion = tmp_path / "alice-at-b.json"
        got = await run(
            a,
            "accounts",
            "assertion",
            "--partner",
            "b",
            "--key",
            str(key),
            "--out",
            str(assertion),
            "--token-file",
            str(token_file),
        )
        assert got.code == 0, got.output
        assert json.loads(assertion.read_text())["account"]["verification"]["status"] == "verified"

        url = f"{b.server.url}/api/v1/tasks/{done['order_id']}/logs"
        read = await cpnode_async("accounts", "call", "--assertion", str(assertion), "--key", str(key), url)
        assert read.code == 0, read.output
        assert base64.b64decode(json.loads(read.out)["data_b64"]) == b"cli at b\n"

        suspended = await run_json(a, "accounts", "suspend", "alice", "--reason", "review")
        assert (suspended["status"], suspended["partners_told"]) == ("suspended", {"b": "told"})
        refused = await cpnode_async(
            "accounts", "call", "--assertion", str(assertion), "--key", str(key), url
        )
        assert refused.code == 1
        assert "account_suspended" in refused.output
        events = await run_json(a, "accounts", "events", "--subject", "alice")
        assert [e["action"] for e in events] == ["create", "token", "verify", "assertion", "suspend"]
        text = await run(b, "accounts", "federated")
        assert text.code == 0, text.output
        assert "alice@a" in text.out
        assert "suspended" in text.out

        user = await run_json(a, "users", "create", "ann", "--role", "auditor")
        assert user["token"].startswith("cpu_")
        ann_file = tmp_path / "ann.token"
        ann_file.write_text(user["token"])
        listed = await run_json(a, "accounts", "list", "--token-file", str(ann_file))
        assert [(r["id"], r["status"]) for r in listed] == [("alice", "suspended")]
        denied = await run(a, "accounts", "reinstate", "alice", "--token-file", str(ann_file))
        assert denied.code == 1
        assert "forbidden_role" in denied.output
        assert [u["id"] for u in await run_json(a, "users", "list")] == ["ann"]
