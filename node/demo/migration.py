"""Demo steps of migration across nodes: carol on Chengdu runs the shipped training program
(configs/tasks/train_numpy.py) on Chengdu's local pool; `cpnode migrate --to-node chongqing --follow`
moves it, mid-run, to the pool of Chongqing (a fifth platform's node, Chengdu's partner) with a live
progress line (the path is reserved at 8 Mbit/s, so the 4 MiB take a few seconds). Chengdu buys the
destination as a task order, Chongqing issues a transfer credential for that migration's files only,
the data express streams the state from Chengdu's pool storage straight to Chongqing's, and the program resumes there from its checkpoint. When it ends, its
outputs (fetched through Chengdu, read at Chongqing) have the SHA-256 of the same program run
without moving. Chengdu settles the run on its own pool up to the cutover; both ledgers settle the
run on Chongqing from Chongqing's signed usage record.

The program's options keep the demo quick: 4 MiB of state (hidden 1024 × features 512), 600 steps
slowed to 30 ms each, so that the move lands mid-run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path
from typing import Any

from node.demo.connectors import NODE as SOURCE
from node.demo.stage import DemoError, Stage
from node.launcher import NodeProcess
from node.money import format_money
from node.ports import free_port
from node.resources import config_file

PARTNER = "chongqing"
CONSUMER = "carol"
EXPRESS_TOKEN = "keys/express.token"  # noqa: S105 - a path, not a secret
STATE: dict[str, Any] = {}
# The training program's options: 4 MiB of state, 30 ms a step (a move lands well before its end).
TRAIN_ARGS = ("--steps", "600", "--hidden", "1024", "--features", "512", "--samples", "1024")
TRAIN_ENV = {"OPENBLAS_NUM_THREADS": "1", "TRAIN_SEED": "7"}
MOVE_AFTER_STEP = 50
BANDWIDTH_MBPS = 8  # the path reserved (and the transfer's cap): 4 MiB take about 4 s, so the progress shows


def configure(stage: Stage) -> None:
    """Chengdu's [migration] section: the data express it will start beside its pools."""
    STATE["express_port"] = free_port()
    stage.more_toml[SOURCE] = f"""
[migration]
express_url = "http://127.0.0.1:{STATE["express_port"]}"
express_token_path = "{EXPRESS_TOKEN}"
chunk_mib = 1
"""


def _config(stage: Stage, node: str) -> str:
    return str(stage.nodes[node].config)


def _json(stage: Stage, node: str, *args: str) -> Any:
    return json.loads(stage.cli([*args, "--json", "--config", _config(stage, node)], show=False))


def _wait(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.2)


def start_partner(stage: Stage) -> None:
    """Start Chengdu's data express and Chongqing's node (a local pool); they pin each other."""
    stage.title(f"{PARTNER}: a partner of {SOURCE} with a local pool; {SOURCE} starts its data express")
    token = stage.nodes[SOURCE].config.parent / EXPRESS_TOKEN
    argv = [sys.executable, "-m", "node", "express", "--listen", f"127.0.0.1:{STATE['express_port']}"]
    argv += ["--token-file", str(token), "--state-file", str(stage.workdir / "express-jobs.json")]
    express = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # noqa: S603
    stage.cleanups.append(express.kill)
    assert express.stdout is not None
    stage.say(f"data express: {express.stdout.readline().strip()}")
    pool = """
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 2

[[pools]]
name = "cq-local"
plugin = "local"
site = "chongqing"
options = { root = "pools/local", slots = 2, price_minor_per_slot_hour = 72000 }
"""
    node = stage.add_node(PARTNER, "Chongqing Computing Center", "Chongqing", extra_toml=pool)
    node.process = NodeProcess(node.config)
    stage.cleanups.append(node.process.kill)
    stage.say(f"{PARTNER:<10} listening on {node.process.start()}")
    keys = {name: _json(stage, name, "keys", "show")["public_key"] for name in (SOURCE, PARTNER)}
    stage.cli(
        ["partners", "add", SOURCE, "--url", stage.nodes[SOURCE].url, "--key", keys[SOURCE],
         "--credit-limit", "10000000", "--config", _config(stage, PARTNER)]
    )  # fmt: skip
    stage.cli(
        ["partners", "add", PARTNER, "--url", stage.nodes[PARTNER].url, "--key", keys[PARTNER],
         "--config", _config(stage, SOURCE)]
    )  # fmt: skip

    def synced() -> bool:
        _json(stage, SOURCE, "catalog", "sync")
        offers = _json(stage, SOURCE, "catalog", "show")
        return any(o.get("source") == f"partner:{PARTNER}" and o.get("chip_model") == "cpu" for o in offers)

    _wait(f"{SOURCE} fetching {PARTNER}'s catalog", synced)


def _program() -> list[str]:
    return [sys.executable, str(config_file("tasks", "train_numpy.py")), *TRAIN_ARGS]


def _digests(folder: Path) -> dict[str, str]:
    """SHA-256 of each file in `folder`, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _start_plain_run(stage: Stage) -> None:
    """The same program run as a plain process, never moved, beside the task (its outputs are the
    reference `identical_result` compares with; it needs no node, so it need not wait its turn)."""
    plain = stage.workdir / "plain-run"
    plain.mkdir()
    log = (stage.workdir / "plain-run.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - the shipped program
        _program(), cwd=plain, env={**TRAIN_ENV, "PATH": "/usr/bin:/bin"},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    stage.cleanups.append(proc.kill)
    STATE["plain"] = (plain, proc)


def run_on_source(stage: Stage) -> None:
    """carol, a consumer of Chengdu, runs the training program on Chengdu's own local pool."""
    stage.title(f"carol on {SOURCE} runs the training program on {SOURCE}'s own local pool")
    config = _config(stage, SOURCE)
    stage.cli(["consumers", "create", CONSUMER, "--config", config])
    stage.cli(["consumers", "deposit", CONSUMER, "--amount", "1000000", "--config", config])
    spec = {
        "name": "train-numpy",
        "program": {"command": [*_program(), "--step-delay-ms", "30"], "env": TRAIN_ENV},
        "outputs": ["out"],
        "resources": {"offer_id": "cd-local/local/local-1", "source": "own", "units": 1, "hours": 1},
    }
    path = stage.workdir / "train-numpy.json"
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    stage.say(f"{path.name}: {' '.join(TRAIN_ARGS)} --step-delay-ms 30 (4 MiB of state)")
    task = _json(stage, SOURCE, "tasks", "submit", str(path), "--consumer", CONSUMER)
    _start_plain_run(stage)
    running = _wait(
        "the training program running",
        lambda: (t := _json(stage, SOURCE, "tasks", "show", task["id"]))["state"] == "running" and t,
    )
    logs = ["tasks", "logs", running["id"], "--config", config]
    _wait(
        f"the program's step {MOVE_AFTER_STEP}",
        lambda: f"step {MOVE_AFTER_STEP} " in stage.cli(logs, show=False),
        120,
    )
    STATE["task"] = running
    stage.say(f"task {running['id']}: running on {running['pool']} (instance {running['instance_id']})")
    stage.cli(logs)


def migrate(stage: Stage) -> None:
    """`cpnode migrate TASK --to-node chongqing --follow`: every step, and the transfer's live
    progress bar."""
    task = STATE["task"]
    stage.title(f"carol's training moves, mid-run, to {PARTNER}'s pool (cpnode migrate --to-node)")
    args = ["migrate", task["id"], "--to-node", PARTNER, "--bandwidth-mbps", str(BANDWIDTH_MBPS), "--follow"]
    args += ["--config", _config(stage, SOURCE)]
    stage.echo(args)
    # Its own process on the demo's terminal: the progress line is live there (every 2 s elsewhere).
    sys.stdout.flush()
    followed = subprocess.run([sys.executable, "-m", "node", *args], check=False)  # noqa: S603
    if followed.returncode != 0:
        raise DemoError(f"cpnode migrate exited with {followed.returncode}")
    moved = _json(stage, SOURCE, "tasks", "show", task["id"])
    if (moved["kind"], moved["partner"]) != ("remote", PARTNER):
        raise DemoError(f"the task did not follow its program to {PARTNER}: {moved}")
    STATE["moved"] = moved
    logs = ["tasks", "logs", task["id"], "--config", _config(stage, SOURCE)]

    def resumed_log() -> str:  # read through the partner, once the program there says where it resumed
        text = stage.cli(logs, show=False)
        return text if "resumed at step" in text else ""

    log = _wait(f"the program resuming from its checkpoint at {PARTNER}", resumed_log)
    resumed = next(line for line in log.splitlines() if "resumed at step" in line)
    stage.say(f"its log goes on through {PARTNER} after the steps run here: {resumed} …")


def identical_result(stage: Stage) -> None:
    """The moved program runs to its end at Chongqing; its outputs, fetched through Chengdu, have the
    SHA-256 of the same program run without moving."""
    task = STATE["task"]
    stage.title("The moved training ends at Chongqing with the result of a run that never moved")
    config = _config(stage, SOURCE)
    ended = _wait(
        "the moved training's end",
        lambda: (t := _json(stage, SOURCE, "tasks", "show", task["id"]))["state"] == "released" and t,
        180,
    )
    if ended["outcome"] != "succeeded":
        raise DemoError(f"the moved training did not succeed: {ended}")
    fetched = stage.workdir / "carol-outputs"
    fetch = ["tasks", "outputs", task["id"], "--out", str(fetched), "--config", config]

    def kept() -> bool:
        try:
            with redirect_stderr(StringIO()):
                stage.cli(fetch, show=False)
        except DemoError:  # its outputs are not kept yet
            return False
        return True

    _wait("its outputs kept", kept)
    stage.cli(fetch)
    plain, proc = STATE["plain"]
    stage.say(f"the same program, never moved: {' '.join(TRAIN_ARGS)} as a plain process (run beside it)")
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        raise DemoError("the unmoved run did not end within 300 s") from None
    if code != 0:
        log = (stage.workdir / "plain-run.log").read_text(errors="replace")
        raise DemoError(f"the unmoved run exited with {code}: {log[-2000:]}")
    moved, unmoved = _digests(fetched / "out"), _digests(plain / "out")
    for name in sorted(unmoved):
        same = "identical" if moved.get(name) == unmoved[name] else "DIFFERENT"
        stage.say(f"out/{name:<13} moved {moved.get(name, '-')[:16]}  unmoved {unmoved[name][:16]}  {same}")
    if moved != unmoved:
        raise DemoError(f"the moved run's outputs differ from an unmoved run's: {moved} {unmoved}")
    stage.say("identical result: the migrated training's outputs are bit for bit those of an unmigrated run")


def settle_both(stage: Stage) -> None:
    """The task has ended; the run on each pool is settled separately, on both ledgers."""
    task, moved = STATE["task"], STATE["moved"]
    stage.title("Each run is settled on its own: Chengdu's up to the cutover, Chongqing's from its start")
    source, bought = (
        _wait(
            f"order {order_id} settled",
            lambda order_id=order_id: (
                (o := _json(stage, SOURCE, "orders", "show", order_id))["state"] == "settled" and o
            ),
        )
        for order_id in (task["order_id"], moved["order_id"])
    )
    sale = _wait(
        f"{PARTNER}'s sale settled",
        lambda: next(
            (
                s
                for s in _json(stage, PARTNER, "orders", "sales")
                if s["trade_id"] == moved["order_id"] and s["state"] == "settled"
            ),
            None,
        ),
    )
    for who, order in ((f"{SOURCE} (its own pool)", source), (f"{SOURCE} → {PARTNER}", bought)):
        stage.say(
            f"{who:<24} order {order['id']}: {order['state']}, {order['used_s']} s, "
            f"{format_money(order['settled_amount'], order['currency'])}"
        )
    stage.say(
        f"{PARTNER + ' (sale)':<24} trade {sale['trade_id']}: {sale['state']}, {sale['used_s']} s, "
        f"{format_money(sale['settled_amount'], sale['currency'])}"
    )
    if (
        source["state"] != "settled"
        or bought["state"] != "settled"
        or bought["settled_amount"] != sale["settled_amount"]
    ):
        raise DemoError(f"the two runs were not settled as they should be: {source} {bought} {sale}")
