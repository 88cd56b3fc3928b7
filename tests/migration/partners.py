"""Two real `cpnode run` processes for migrations to a partner's pool: `a` with a local pool `cpu`
(the source: alice's task runs there) and the data express beside it, and partner `b` with a local
pool `cpu` of its own at twice the price (so alice's task starts on `a`). They pin each other with
the operator's commands, alice is funded on `a`, and `a` holds `b`'s catalog."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.pools.local import COUNTER_PROGRAM
from node.config import load_settings
from node.identity import load_identity
from node.launcher import NodeProcess
from node.ports import free_port
from tests.support.express import ExpressProcess
from tests.support.nodes import make_node_dir
from tests.support.tasks import PAIR_TOML, PRICE, pool_toml
from tests.tasks.processes import BASE, ProcNode, cli_json, sync

MIB = 1 << 20
A_BASE = BASE.replace("[scheduler]\nenabled = false\n", "[scheduler]\nenabled = true\n") + PAIR_TOML.replace(
    "[trading]\n", "[trading]\nrecover_every_s = 1\n"
)


def migration_toml(express: ExpressProcess, **settings: Any) -> str:
    """`a`'s [migration] section: the express, small chunks, quick retries."""
    values = {
        "chunk_mib": 1,
        "step_attempts": 3,
        "retry_delay_s": 0.2,
        "poll_interval_s": 0.1,
        "supervise_every_s": 0.2,
        "lease_ttl_s": 5,
        **settings,
    }
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    return f"""
[migration]
express_url = "{express.url}"
express_token_path = "{express.token_file}"
{lines}
"""


def start_partners(
    base: Path,
    express: ExpressProcess,
    a_pools: str | None = None,
    b_pools: str | None = None,
    a_db_url: str | None = None,
    **migration: Any,
) -> tuple[ProcNode, ProcNode]:
    """Create and start `a` and `b`: their pools (default: a local pool `cpu` each, `b`'s at twice
    the price; "" for none), `a`'s database (default its SQLite file) and [migration] settings."""
    a_pools = pool_toml(slots=2) if a_pools is None else a_pools
    b_pools = pool_toml(slots=2, price=2 * PRICE) if b_pools is None else b_pools
    nodes = []
    for name, extra in (
        # `a` runs its scheduler: trading's upkeep delivers a cancel that `b` missed
        ("a", A_BASE + a_pools + migration_toml(express, **migration)),
        ("b", BASE + PAIR_TOML + b_pools),
    ):
        config = make_node_dir(base, name, extra_toml=extra, db_url=a_db_url if name == "a" else None)
        text = config.read_text().replace("port = 0\n", f"port = {free_port()}\n", 1)
        config.write_text(text)
        node = ProcNode(name, config, NodeProcess(config))
        node.start()
        nodes.append(node)
    a, b = nodes
    return a, b


def pair_up(a: ProcNode, b: ProcNode, credit_limit: int = 10_000_000) -> None:
    """`a` and `b` pin each other (`b` gives `a` `credit_limit`), alice is funded on `a`, and `a`
    fetches `b`'s catalog."""
    keys = {n.name: load_identity(load_settings(n.config, environ={})).public_key for n in (a, b)}
    cli_json(
        b.config,
        "partners",
        "add",
        "a",
        "--url",
        a.url,
        "--key",
        keys["a"],
        "--credit-limit",
        str(credit_limit),
    )
    cli_json(a.config, "partners", "add", "b", "--url", b.url, "--key", keys["b"])
    cli_json(a.config, "consumers", "create", "alice")
    cli_json(a.config, "consumers", "deposit", "alice", "--amount", "1000000")
    sync(a)


def make_partners(
    base: Path,
    express: ExpressProcess,
    credit_limit: int = 10_000_000,
    a_extra: str = "",
    a_db_url: str | None = None,
    **migration: Any,
) -> tuple[ProcNode, ProcNode]:
    """`start_partners` with the default pools (and `a_extra` added to `a`'s), then `pair_up`."""
    a, b = start_partners(base, express, pool_toml(slots=2) + a_extra, None, a_db_url, **migration)
    pair_up(a, b, credit_limit)
    return a, b


def counter_task(state_bytes: int = 2 * MIB) -> dict[str, Any]:
    """The counter program (it checkpoints on request) with `state_bytes` of state, on one CPU slot."""
    return {
        "program": {
            "command": [sys.executable, str(COUNTER_PROGRAM)],
            "env": {"COUNTER_STATE_BYTES": str(state_bytes)},
        },
        "resources": {"units": 1, "hours": 1, "chip_model": "cpu", "objective": "cost"},
    }


def submit_running(a: ProcNode, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit alice's task on `a` and wait until it runs on `a`'s own pool."""
    status, task = a.api("POST", "/api/v1/tasks", {"spec": spec, "consumer": "alice"})
    assert status == 201, task
    running = a.wait(task["id"], lambda t: t["state"] == "running", 60, "running")
    assert (running["kind"], running["pool"]) == ("own", "cpu"), running
    return running


def wait_migration(
    node: ProcNode, migration_id: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 120
) -> dict[str, Any]:
    """Poll a migration on `node` until `check(migration)` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, migration = node.api("GET", f"/api/v1/migrations/{migration_id}")
        assert status == 200, migration
        if check(migration):
            return dict(migration)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"migration {migration_id}: {json.dumps(migration, indent=1)[:5000]}\n{node.process.log()[-3000:]}"
            )
        time.sleep(0.1)


def resting(migration: dict[str, Any]) -> bool:
    """Whether a migration rests (nothing more happens without a request)."""
    return migration["state"] in ("completed", "rolled_back", "cancelled", "needs_attention")


def instance_log(node: ProcNode, task_id: str) -> str:
    """The log of a task as the node's API gives it (read through the partner for a remote task)."""
    import base64

    status, chunk = node.api("GET", f"/api/v1/tasks/{task_id}/logs?limit=1000000")
    assert status == 200, chunk
    return base64.b64decode(chunk["data_b64"]).decode()


def resumed_at(node: ProcNode, task_id: str, starts: int = 1, timeout_s: float = 60) -> int:
    """The count the task's program started from the `starts`-th time (its log, polled until it
    says so: a program just started may not have written it yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = instance_log(node, task_id)
        if log.count("counter starting at ") >= starts:
            return int(log.split("counter starting at ")[starts].split()[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} did not start {starts} time(s): {log[-2000:]}")
        time.sleep(0.2)
