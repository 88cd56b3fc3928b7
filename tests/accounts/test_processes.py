"""Account interconnection between two real `cpnode run` processes whose schedulers run: `b` has a
local pool and sells `a` a task for alice; alice, a consumer of `a` only, reads that task's log at
`b` in her own name with the CLI, and `b` billed it to `a`'s partner account; a suspension at `a`
is refused at `b` at the next request when pushed, and by `b`'s first status check that starts
after it (one sync interval) when the push was lost."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.accounts import store
from node.accounts.component import CHECK_JOB
from node.config import load_settings
from node.db import make_engine
from tests.support.cli import CliResult, cpnode
from tests.support.federation import FED_TOML
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.polling import wait_for
from tests.support.scrape import parse
from tests.support.tasks import pool_toml, python_task

# Node processes start from fresh interpreters here, as operators start them (`cpnode run`).
pytestmark = pytest.mark.fresh_processes

SYNC_S = 2
TOML = FED_TOML.replace("sync_interval_s = 3600", f"sync_interval_s = {SYNC_S}")
DEADLINE_S = 60.0


@pytest.fixture(name="two")
def fixture_two(tmp_path: Path) -> Iterator[dict[str, tuple[Path, NodeProcess]]]:
    """Node processes `a` and `b` (with a local pool), started and stopped around the test."""
    started: dict[str, tuple[Path, NodeProcess]] = {}
    try:
        for name, extra in (("a", ""), ("b", pool_toml())):
            config = make_node_dir(tmp_path, name, extra_toml=TOML + extra)
            process = NodeProcess(config)
            process.start()
            started[name] = (config, process)
        yield started
    finally:
        for _, process in started.values():
            process.kill()


def check_rounds(url: str) -> float:
    """How many of its status checks (`accounts-status-check`) the node at `url` has run."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        scraped = parse(answer.read().decode())
    return scraped.total("cpnode_scheduler_job_runs_total", job=CHECK_JOB)


Run = Callable[..., CliResult]


def buy_a_task_at_b(run: Run, two: dict[str, tuple[Path, NodeProcess]], tmp_path: Path) -> str:
    """`a` and `b` pin each other (`b` gives `a` credit), alice of `a` runs a task that `a` buys at
    `b`; the task's id at `b` (the trade id)."""
    keys = {name: run(name, "keys", "show", "--json").json()["public_key"] for name in two}
    run(
        "b", "partners", "add", "a", "--url", two["a"][1].url, "--key", keys["a"], "--credit-limit", "1000000"
    )
    run("a", "partners", "add", "b", "--url", two["b"][1].url, "--key", keys["b"])
    run("a", "consumers", "create", "alice")
    run("a", "consumers", "deposit", "alice", "--amount", "100000")
    run("a", "catalog", "sync")
    spec = tmp_path / "task.json"
    spec.write_text(json.dumps(python_task("print('ran at b for alice')", max_duration_s=60)))
    run("a", "tasks", "submit", str(spec), "--consumer", "alice", "--id", "a.interconnect", "--follow")
    task = run("a", "tasks", "show", "a.interconnect", "--json").json()
    assert (task["kind"], task["outcome"]) == ("remote", "succeeded"), task
    return str(task["order_id"])


def test_a_partners_consumer_reads_its_task_at_the_partner_until_suspended(
    two: dict[str, tuple[Path, NodeProcess]], tmp_path: Path
) -> None:
    """See the module docstring."""
    config = {name: str(path) for name, (path, _) in two.items()}
    b_url = two["b"][1].url

    def run(node: str, *args: str) -> CliResult:
        done = cpnode(*args, "--config", config[node])
        assert done.code == 0, done.output
        return done

    at_b = buy_a_task_at_b(run, two, tmp_path)
    token = tmp_path / "alice.token"
    token.write_text(run("a", "consumers", "token", "alice", "--json").json()["token"])
    key, assertion = tmp_path / "alice.key", tmp_path / "assertion.json"
    assert cpnode("accounts", "key", "--out", str(key)).code == 0
    run("a", "accounts", "assertion", "--partner", "b", "--key", str(key), "--out", str(assertion),
        "--token-file", str(token))  # fmt: skip

    def call_b(path: str) -> CliResult:
        return cpnode("accounts", "call", "--assertion", str(assertion), "--key", str(key), b_url + path)

    logs = call_b(f"/api/v1/tasks/{at_b}/logs")
    assert logs.code == 0, logs.output
    assert base64.b64decode(json.loads(logs.out)["data_b64"]) == b"ran at b for alice\n"
    me = call_b("/api/v1/whoami")
    assert me.code == 0, me.output
    assert json.loads(me.out)["consumer"] == "alice@a"

    # At b the task is alice@a's, bought by a, and what it cost is charged to a's partner account.
    sold = run("b", "tasks", "show", at_b, "--json").json()
    assert (sold["kind"], sold["consumer"], sold["partner"]) == ("sold", "alice@a", "a"), sold

    def billed() -> bool:
        [partner_a] = run("b", "ledger", "balances", "--account", "partner:a", "--json").json()
        amount = run("b", "tasks", "show", at_b, "--json").json()["amount"]
        return bool(amount) and partner_a["debits_posted"] == amount

    wait_for(billed, DEADLINE_S, what="the task's cost posted to partner:a at b")

    run("a", "accounts", "suspend", "alice")
    refused = call_b("/api/v1/whoami")
    assert (refused.code, "account_suspended" in refused.output) == (1, True), refused.output
    run("a", "accounts", "reinstate", "alice")
    assert call_b("/api/v1/whoami").code == 0

    # Lost push: the suspension is written to a's database alone. A check of b's that was under way
    # may have asked before it; the next one starts after it, and must find it.
    engine = make_engine(load_settings(Path(config["a"]), environ={}).database_url)
    try:
        store.change(engine, "consumer", "alice", "suspend", "admin", store.now_ms(), "push lost")
    finally:
        engine.dispose()
    started, rounds = time.monotonic(), check_rounds(b_url)
    wait_for(lambda: check_rounds(b_url) >= rounds + 2, DEADLINE_S, what="two more status checks at b")
    waited_s = time.monotonic() - started
    refused = call_b("/api/v1/whoami")
    assert (refused.code, "account_suspended" in refused.output) == (1, True), refused.output
    events = run("b", "accounts", "events", "--kind", "federated", "--json").json()
    assert [(e["action"], e["detail"].get("via")) for e in events][-1] == ("suspended", "sync"), events
    print(
        f"refused at b by its first status check after the lost push ({waited_s:.1f} s, interval {SYNC_S} s)"
    )
