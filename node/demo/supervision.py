"""Demo step of supervision reporting (监管): a national supervisor registers the three platforms'
nodes, each node pins it and reports on its own schedule, and the supervisor shows national totals
by region and chip family, with every node's catalog checked against its report."""

from __future__ import annotations

import json
import time

from node.demo.foundation import NODES
from node.demo.stage import DemoError, Stage
from node.launcher import NodeProcess

SUPERVISOR = "national"
DEADLINE_S = 60.0
POLL_S = 0.5


def _public_key(stage: Stage, name: str) -> str:
    shown = json.loads(
        stage.cli(["keys", "show", "--config", str(stage.nodes[name].config), "--json"], show=False)
    )
    return str(shown["public_key"])


def report_to_supervisor(stage: Stage) -> None:
    """Start a supervisor (`--roles supervisor`), pin it and the nodes to each other, and wait until
    every node's report is in and checked against its signed catalog."""
    stage.title("A national supervisor: the nodes report, it totals and checks")
    supervisor = stage.add_node(
        SUPERVISOR,
        "National Computing Power Supervision",
        "Beijing",
        '[federation]\nallow_networks = ["127.0.0.0/8"]\n\n[supervision]\ncheck_interval_s = 60\n',
    )
    supervisor.process = NodeProcess(supervisor.config, roles="supervisor")
    stage.cleanups.append(supervisor.process.kill)
    stage.say(f"{SUPERVISOR:<10} listening on {supervisor.process.start()} (--roles supervisor)")
    supervisor_key = _public_key(stage, SUPERVISOR)
    for name, _, _ in NODES:
        node = stage.nodes[name]
        stage.cli(
            [
                "supervision",
                "nodes",
                "add",
                name,
                "--url",
                node.url,
                "--key",
                _public_key(stage, name),
                "--config",
                str(supervisor.config),
            ],
            show=name == NODES[0][0],
        )
        stage.cli(
            [
                "supervisors",
                "add",
                SUPERVISOR,
                "--url",
                supervisor.url,
                "--key",
                supervisor_key,
                "--config",
                str(node.config),
            ],
            show=name == NODES[0][0],
        )
    deadline = time.monotonic() + DEADLINE_S
    summary_args = ["supervision", "summary", "--config", str(supervisor.config)]
    while True:
        summary = json.loads(stage.cli([*summary_args, "--json"], show=False))
        checks = {node["check"]["status"] for node in summary["nodes"]}
        if summary["totals"]["reporting_nodes"] == len(NODES) and checks == {"ok"}:
            break
        if time.monotonic() > deadline:
            raise DemoError(
                f"the supervisor did not total and check every node in {DEADLINE_S:g} s: {summary}"
            )
        time.sleep(POLL_S)
    stage.cli(summary_args)
    if summary["flagged"]:
        raise DemoError(f"nodes flagged: {summary['flagged']}")
