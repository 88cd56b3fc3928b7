"""Two real `cpnode run` processes for the tasks fault tests: buyer `a` (no pools) and seller `b`
(a local pool), on fixed loopback ports (so a node restarted keeps its address), pinned to each
other with the operator's commands, alice funded on `a` and `b`'s catalog fetched."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import load_settings
from node.identity import load_identity
from node.launcher import NodeProcess, start_all
from node.ports import free_port
from node.runfile import read_admin_token
from tests.support.cli import cpnode
from tests.support.nodes import make_node_dir
from tests.support.tasks import DEPOSIT, NODE_TOML, PAIR_TOML, pool_toml

BASE = NODE_TOML.replace("[trading]\nrecover_every_s = 3600\n", "")


def cli_json(config: Path, *args: str) -> Any:
    """`cpnode ARGS --json`, which must succeed; its parsed output."""
    code, out, err = cpnode(*args, "--json", config=config)
    assert code == 0, out + err
    return json.loads(out)


@dataclass
class ProcNode:
    """One node process and how to reach it."""

    name: str
    config: Path
    process: NodeProcess

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.process.url

    def start(self) -> None:
        """Start (or restart) the process."""
        self.process = NodeProcess(self.config)
        self.process.start()

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """One API call (admin token unless `token`); (status, JSON answer)."""
        token = token or read_admin_token(load_settings(self.config, environ={}))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def task(self, task_id: str) -> dict[str, Any]:
        """A task as the API shows it."""
        status, body = self.api("GET", f"/api/v1/tasks/{task_id}")
        assert status == 200, body
        return dict(body)

    def wait(self, task_id: str, check: Any, timeout_s: float = 60, what: str = "") -> dict[str, Any]:
        """Poll the task until `check(task)` holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            task = self.task(task_id)
            if check(task):
                return task
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id}: {what or 'condition'} not reached: {task}\n{self.process.log()[-3000:]}"
                )
            time.sleep(0.1)

    def released(self, task_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """Wait until the task is released."""
        return self.wait(task_id, lambda t: t["state"] == "released", timeout_s, "released")


def make_pair(base: Path, seller_pool: str = "", buyer_tasks: str = "") -> tuple[ProcNode, ProcNode]:
    """Create and start `a` (buyer) and `b` (seller); pin, fund and sync (see the module docstring).
    `buyer_tasks`: lines added to `a`'s `[tasks]` section."""
    nodes = []
    buyer = BASE.replace("[tasks]\n", "[tasks]\n" + buyer_tasks)
    for name, extra in (
        ("a", buyer + PAIR_TOML),
        ("b", BASE + PAIR_TOML + pool_toml(slots=4, extra=seller_pool)),
    ):
        config = make_node_dir(base, name, extra_toml=extra)
        text = config.read_text().replace("port = 0\n", f"port = {free_port()}\n", 1)
        config.write_text(text)
        nodes.append(ProcNode(name, config, NodeProcess(config)))
    start_all([node.process for node in nodes])  # side by side: each imports and migrates at once
    a, b = nodes
    keys = {n.name: load_identity(load_settings(n.config, environ={})).public_key for n in nodes}
    cli_json(
        b.config, "partners", "add", "a", "--url", a.url, "--key", keys["a"], "--credit-limit", "10000000"
    )
    cli_json(a.config, "partners", "add", "b", "--url", b.url, "--key", keys["b"])
    cli_json(a.config, "consumers", "create", "alice")
    cli_json(a.config, "consumers", "deposit", "alice", "--amount", str(DEPOSIT))
    sync(a)
    return a, b


def sync(a: ProcNode) -> None:
    """`a` fetches `b`'s catalog now (once it has offers)."""
    deadline = time.monotonic() + 30
    while True:
        results = cli_json(a.config, "catalog", "sync")
        _status, offers = a.api("GET", "/api/v1/offers")
        if (
            results
            and results[0]["outcome"] in ("ok", "unchanged")
            and any(o["source"] == "partner:b" for o in offers["offers"])
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"a has no offers of b: {results} {offers}")
        time.sleep(0.2)


def stop_all(*nodes: ProcNode) -> None:
    """Stop every node that still runs (asserting clean exits)."""
    for node in nodes:
        if node.process.running:
            assert node.process.stop() == 0, node.process.log()
