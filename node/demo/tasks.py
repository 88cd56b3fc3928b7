"""Demo steps of delivery: alice on Beijing submits the NumPy training task of configs/tasks; its
best offer is on Chengdu's local pool, a partner's. Chengdu runs it, Beijing follows its log and
fetches its output, both ledgers settle the metered seconds, and reconciliation finds nothing.

The spec is configs/tasks/train-numpy.toml as shipped, except that its input's URL points at the
file server this step starts on a free loopback port (the shipped one names port 8765)."""

from __future__ import annotations

import json
import re
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from node.demo.connectors import NODE as POOL_NODE
from node.demo.stage import DemoError, Stage
from node.money import format_money
from node.resources import config_file

BUYER = "beijing"
CREDIT_LIMIT = 10_000_000
STATE: dict[str, Any] = {}


def _config(stage: Stage, node: str) -> str:
    return str(stage.nodes[node].config)


def _json(stage: Stage, node: str, *args: str) -> Any:
    return json.loads(stage.cli([*args, "--json", "--config", _config(stage, node)], show=False, echo=True))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing per request."""


def serve_inputs(stage: Stage) -> str:
    """Serve configs/tasks on a free loopback port (the task's input comes from there); its URL."""
    folder = config_file("tasks", "train_numpy.py").parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stage.cleanups.append(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}"


def pin_pool_node(stage: Stage) -> None:
    """Beijing and Chengdu pin each other; Chengdu grants Beijing a credit line; Beijing syncs."""
    stage.title(f"{BUYER} and {POOL_NODE} become partners (cpnode partners add)")
    keys = {name: _json(stage, name, "keys", "show")["public_key"] for name in (BUYER, POOL_NODE)}
    stage.cli(
        ["partners", "add", BUYER, "--url", stage.nodes[BUYER].url, "--key", keys[BUYER],
         "--credit-limit", str(CREDIT_LIMIT), "--config", _config(stage, POOL_NODE)]
    )  # fmt: skip
    stage.cli(
        ["partners", "add", POOL_NODE, "--url", stage.nodes[POOL_NODE].url, "--key", keys[POOL_NODE],
         "--config", _config(stage, BUYER)]
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        _json(stage, BUYER, "catalog", "sync")
        offers = json.loads(
            stage.cli(["catalog", "show", "--json", "--config", _config(stage, BUYER)], show=False)
        )
        if any(o.get("source") == f"partner:{POOL_NODE}" and o.get("chip_model") == "cpu" for o in offers):
            return
        if time.monotonic() > deadline:
            raise DemoError(f"{BUYER} has no CPU offer of {POOL_NODE}")
        time.sleep(0.5)


def run_task(stage: Stage) -> None:
    """alice submits the training task and follows it: state changes and its live log."""
    stage.title(f"alice on {BUYER} runs a training task; its best offer is on {POOL_NODE}'s pool")
    url = serve_inputs(stage)
    shipped = config_file("tasks", "train-numpy.toml")
    text = re.sub(r'url = "http://127\.0\.0\.1:8765/', f'url = "{url}/', shipped.read_text(encoding="utf-8"))
    spec = stage.workdir / "train-numpy.toml"
    spec.write_text(text, encoding="utf-8")
    stage.say(f"{shipped.name}, its input served at {url}:")
    stage.say(text.split("[program]")[1].strip())
    STATE["start_ms"] = int(time.time() * 1000)
    args = [
        "tasks",
        "submit",
        str(spec),
        "--consumer",
        "alice",
        "--follow",
        "--config",
        _config(stage, BUYER),
    ]
    stage.echo(args)  # before it runs: its state changes show live (stderr), then its log
    stage.cli(args, echo=False)
    [task] = [t for t in _json(stage, BUYER, "tasks", "list") if t.get("name") == "train-numpy"]
    if (task["state"], task["outcome"], task["kind"]) != ("released", "succeeded", "remote"):
        raise DemoError(f"the task did not run to success on a partner's pool: {task}")
    STATE["task"] = task
    stage.say(
        f"task {task['id']}: ran on {task['partner']} ({task['offer_id']}), {task['used_s']} s metered, "
        f"{format_money(task['amount'], task['currency'])}"
    )


def fetch_outputs(stage: Stage) -> None:
    """alice fetches the trained model and metrics through Beijing (read at Chengdu, hash-checked)."""
    stage.title("alice fetches the task's outputs (cpnode tasks outputs)")
    task = STATE["task"]
    out = stage.workdir / "alice-outputs"
    stage.cli(["tasks", "outputs", task["id"], "--out", str(out), "--config", _config(stage, BUYER)])
    metrics = json.loads((out / "out" / "metrics.json").read_text(encoding="utf-8"))
    stage.say(f"out/metrics.json: {json.dumps(metrics, sort_keys=True)[:200]}")


def settle_and_reconcile(stage: Stage) -> None:
    """Both ledgers settled the metered amount; reconciliation over the peer API finds no discrepancy."""
    stage.title(f"Both ledgers settled the metered amount; {BUYER} reconciles with {POOL_NODE}")
    task = STATE["task"]
    order = _json(stage, BUYER, "orders", "show", task["order_id"])
    sale = next(s for s in _json(stage, POOL_NODE, "orders", "sales") if s["trade_id"] == task["order_id"])
    stage.say(
        f"{BUYER} order {order['id']}: {order['state']}, {order['used_s']} s, "
        f"{format_money(order['settled_amount'], order['currency'])} of {format_money(order['amount'], order['currency'])} held"
    )
    stage.say(
        f"{POOL_NODE} sale: {sale['state']}, {sale['used_s']} s, {format_money(sale['settled_amount'], sale['currency'])}"
    )
    if not order["settled_amount"] == sale["settled_amount"] == task["amount"] or order["state"] != "settled":
        raise DemoError(
            f"the ledgers did not settle the metered amount {format_money(task['amount'], task['currency'])}: "
            f"{order} {sale}"
        )
    end_ms = int(time.time() * 1000) + 1
    while time.time() * 1000 <= end_ms:  # the window must have closed before it is summarised
        time.sleep(0.005)
    stage.cli(
        ["ledger", "reconcile", "--partner", POOL_NODE, "--window", f"{STATE['start_ms']}/{end_ms}",
         "--margin-s", "0", "--config", _config(stage, BUYER)]
    )  # fmt: skip
    disputes = _json(stage, BUYER, "ledger", "discrepancies", "--partner", POOL_NODE)
    if disputes:
        raise DemoError(f"usage disputes were recorded: {disputes}")
    stage.say("no usage dispute: Chengdu's signed usage record lies within what Beijing saw of the run")
