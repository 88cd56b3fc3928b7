"""Demo step of the ledger's audit: after the real trade, Beijing exports a signed audit bundle that
an auditor verifies offline with Beijing's public key alone, and that fails, naming the transfer,
once one digit of one amount is changed."""

from __future__ import annotations

import json
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

from node.cli.main import main as cpnode
from node.config import load_settings
from node.demo.stage import DemoError, Stage
from node.identity import load_identity


def _expect_failure(stage: Stage, args: list[str]) -> str:
    """Run a command that must fail with exit 1 (its command line echoed); return its message."""
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cpnode(args)
    stage.echo(args)
    stage.console.print((out.getvalue() + err.getvalue()).rstrip(), markup=False, highlight=False)
    if code != 1:
        raise DemoError(f"cpnode {' '.join(args)} exited with {code}, expected 1")
    return out.getvalue() + err.getvalue()


def audit(stage: Stage) -> None:
    """Beijing exports an audit bundle of its ledger (the trade above included); it verifies with
    only Beijing's public key, and a changed digit is caught and named."""
    stage.title("Audit: a signed bundle an auditor verifies offline with the public key alone")
    config = str(stage.nodes["beijing"].config)
    bundle = stage.workdir / "audit-beijing"
    stage.cli(["ledger", "export", "--out", str(bundle), "--config", config])
    key = load_identity(load_settings(stage.nodes["beijing"].config, environ={})).public_key
    stage.say("files: " + ", ".join(sorted(p.name for p in bundle.iterdir())))
    stage.cli(["ledger", "verify", str(bundle), "--key", key])
    transfers = bundle / "transfers.jsonl"
    lines = transfers.read_bytes().split(b"\n")
    index = next(i for i, line in enumerate(lines) if line and json.loads(line)["kind"] == "pending")
    record = json.loads(lines[index])
    amount = str(record["amount"]).encode()
    changed = amount[:-1] + (b"1" if amount[-1:] != b"1" else b"2")
    lines[index] = lines[index].replace(b'"amount":' + amount, b'"amount":' + changed, 1)
    transfers.write_bytes(b"\n".join(lines))
    stage.say(
        f"changed the last digit of the amount in line {index + 1} of transfers.jsonl "
        f"(seq {record['seq']}, transfer {record['id']}):"
    )
    report = _expect_failure(stage, ["ledger", "verify", str(bundle), "--key", key])
    if f"transfers.jsonl seq {record['seq']}" not in report:
        raise DemoError("the changed transfer was not named")
