"""Demo steps of accounts (账号互通): Beijing verifies alice; alice makes a client key, gets Beijing's
assertion for Chengdu and reads the log of her task directly at Chengdu, in her own name; Beijing
suspends her and Chengdu refuses her at once; Beijing reinstates her; the audit trail shows it all."""

from __future__ import annotations

import base64
import json
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

from node.demo.connectors import NODE as POOL_NODE
from node.demo.stage import DemoError, Stage
from node.demo.tasks import BUYER, STATE


def _config(stage: Stage, node: str) -> str:
    return str(stage.nodes[node].config)


def _refused(stage: Stage, args: list[str]) -> str:
    """Run `cpnode ARGS`, which must fail; what it printed."""
    from node.cli.main import main as cpnode

    stage.echo(args)
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cpnode(args)
    if code == 0:
        raise DemoError(f"cpnode {' '.join(args)} should have been refused")
    text = (out.getvalue() + err.getvalue()).strip()
    stage.console.print(text, markup=False, highlight=False)
    return text


def use_partner_in_own_name(stage: Stage) -> None:
    """alice reads her task's log at Chengdu on Beijing's assertion; suspended, she is refused there."""
    stage.title(f"alice uses {POOL_NODE} in her own name on {BUYER}'s assertion (cpnode accounts)")
    beijing = _config(stage, BUYER)
    token = json.loads(stage.cli(["consumers", "token", "alice", "--json", "--config", beijing], show=False))
    token_file = stage.workdir / "alice.token"
    token_file.write_text(token["token"], encoding="utf-8")
    stage.cli(
        ["accounts", "verify", "alice", "--note", "identity card checked at the counter", "--config", beijing]
    )
    key = stage.workdir / "alice.key"
    stage.cli(["accounts", "key", "--out", str(key)])
    assertion = stage.workdir / f"alice-at-{POOL_NODE}.json"
    stage.cli(
        ["accounts", "assertion", "--partner", POOL_NODE, "--key", str(key), "--out", str(assertion),
         "--token-file", str(token_file), "--config", beijing]
    )  # fmt: skip
    url = f"{stage.nodes[POOL_NODE].url}/api/v1/tasks/{STATE['task']['order_id']}/logs?limit=200"
    call = ["accounts", "call", "--assertion", str(assertion), "--key", str(key), url]
    chunk = json.loads(stage.cli(call, show=False, echo=True))
    stage.say(
        f"{POOL_NODE} answers alice@{BUYER} with her task's log: {base64.b64decode(chunk['data_b64']).decode()[:120]!r}"
    )
    stage.cli(["accounts", "suspend", "alice", "--reason", "demo: payment under review", "--config", beijing])
    if "account_suspended" not in _refused(stage, call):
        raise DemoError(f"{POOL_NODE} did not refuse alice once {BUYER} suspended her")
    stage.cli(["accounts", "reinstate", "alice", "--config", beijing])
    stage.cli(["accounts", "events", "--subject", "alice", "--config", beijing])
    stage.cli(["accounts", "federated", "--config", _config(stage, POOL_NODE)])
