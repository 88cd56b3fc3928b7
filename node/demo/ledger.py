"""Demo steps of the ledger: Beijing buys compute from Shanghai and both settle the trade in their
own ledgers; Beijing exports a signed audit bundle that verifies offline (and fails, naming the
transfer, after one byte is changed); the two nodes reconcile through signed summaries."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from typing import Any

from node.cli.main import main as cpnode
from node.config import load_settings
from node.demo.stage import DemoError, Stage
from node.identity import load_identity
from node.service import read_admin_token

TRADE = "trade-bj-sh-0001"
PRICE = 2_400_000  # fen: 8×A800 for one hour at Shanghai's price to Beijing
FEE = 24_000  # Beijing's platform fee


def _ledger(stage: Stage, node: str, *args: str, show: bool = True) -> str:
    return stage.cli(["ledger", *args, "--config", str(stage.nodes[node].config)], show=show)


def _expect_failure(stage: Stage, args: list[str]) -> str:
    """Run a command that must fail with exit 1; return its message."""
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cpnode(args)
    stage.console.print(f"$ cpnode {' '.join(args)}", style="dim", markup=False)
    stage.console.print((out.getvalue() + err.getvalue()).rstrip(), markup=False, highlight=False)
    if code != 1:
        raise DemoError(f"cpnode {' '.join(args)} exited with {code}, expected 1")
    return out.getvalue() + err.getvalue()


def _post_batch(stage: Stage, node: str, transfers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST a batch to the node's admin API (one transaction); its results."""
    settings = load_settings(stage.nodes[node].config, environ={})
    request = urllib.request.Request(  # noqa: S310 - the demo node on loopback
        stage.nodes[node].url + "/api/v1/ledger/transfers",
        data=json.dumps({"transfers": transfers}).encode(),
        headers={"Authorization": f"Bearer {read_admin_token(settings)}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        results: list[dict[str, Any]] = json.loads(response.read())["results"]
    for result in results:
        stage.say(f"  {result['id']:<28} {result['status']}  seq {result['seq']}")
    return results


def settle_trade(stage: Stage) -> None:
    """Both nodes record the same trade: Beijing holds its consumer's money in escrow, then settles it
    as one linked chain (post the hold, pay what it owes Shanghai, take its fee); Shanghai pays its
    pool from what Beijing owes it."""
    stage.title("Settlement: one trade in two ledgers (double entry, a hold, a linked chain)")
    for node, partner in (("beijing", "shanghai"), ("shanghai", "beijing")):
        for account, kind, extra in (
            ("bank", "external", ()),
            ("pool", "provider", ()),
            ("escrow", "escrow", ()),
            ("fees", "fees", ()),
            (f"partner-{partner}", "partner", ("--partner", partner)),
        ):
            _ledger(
                stage,
                node,
                "accounts",
                "create",
                account,
                "--currency",
                "CNY",
                "--kind",
                kind,
                *extra,
                show=False,
            )
    _ledger(
        stage,
        "beijing",
        "accounts",
        "create",
        "alice",
        "--currency",
        "CNY",
        "--kind",
        "consumer",
        "--no-overdraft",
    )
    _ledger(
        stage,
        "beijing",
        "transfer",
        "--id",
        "topup-alice-1",
        "--from",
        "bank",
        "--to",
        "alice",
        "--amount",
        "5000000",
        "--currency",
        "CNY",
    )
    link = {"trade_id": TRADE, "partner": "shanghai", "currency": "CNY"}
    stage.say("beijing: hold the consumer's money for the trade (POST /api/v1/ledger/transfers)")
    _post_batch(
        stage,
        "beijing",
        [
            {
                "id": f"{TRADE}-hold",
                "kind": "pending",
                "debit_account": "alice",
                "credit_account": "escrow",
                "amount": PRICE + FEE,
                "timeout_s": 3600,
                **link,
            }
        ],
    )
    stage.say("beijing: settle as one chain: post the hold, pay Shanghai, take the fee")
    chain = [
        {
            "id": f"{TRADE}-post",
            "kind": "post",
            "pending_id": f"{TRADE}-hold",
            "amount": PRICE + FEE,
            "linked": True,
        },
        {
            "id": f"{TRADE}-pay",
            "kind": "single",
            "debit_account": "escrow",
            "credit_account": "partner-shanghai",
            "amount": PRICE,
            "linked": True,
            **link,
        },
        {
            "id": f"{TRADE}-fee",
            "kind": "single",
            "debit_account": "escrow",
            "credit_account": "fees",
            "amount": FEE,
            **link,
        },
    ]
    if {r["status"] for r in _post_batch(stage, "beijing", chain)} != {"created"}:
        raise DemoError("the settlement chain was not created")
    _ledger(
        stage,
        "shanghai",
        "transfer",
        "--id",
        f"{TRADE}-in",
        "--from",
        "partner-beijing",
        "--to",
        "pool",
        "--amount",
        str(PRICE),
        "--trade-id",
        TRADE,
        "--partner",
        "beijing",
        "--currency",
        "CNY",
    )
    overdraft = [
        "ledger",
        "transfer",
        "--id",
        "too-much",
        "--from",
        "alice",
        "--to",
        "pool",
        "--amount",
        "9999999",
        "--currency",
        "CNY",
        "--config",
        str(stage.nodes["beijing"].config),
    ]
    if "exceeds_credits" not in _expect_failure(stage, overdraft):
        raise DemoError("an overdraft was not refused")
    _ledger(stage, "beijing", "balances")


def audit(stage: Stage) -> None:
    """Beijing exports an audit bundle; it verifies with only Beijing's public key, and a changed byte
    is caught and named."""
    stage.title("Audit: a signed bundle an auditor verifies offline with the public key alone")
    bundle = stage.workdir / "audit-beijing"
    _ledger(stage, "beijing", "export", "--out", str(bundle))
    key = load_identity(load_settings(stage.nodes["beijing"].config, environ={})).public_key
    stage.say("files: " + ", ".join(sorted(p.name for p in bundle.iterdir())))
    stage.cli(["ledger", "verify", str(bundle), "--key", key])
    transfers = bundle / "transfers.jsonl"
    lines = transfers.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(str(PRICE).encode(), str(PRICE - 1).encode(), 1)
    transfers.write_bytes(b"\n".join(lines))
    stage.say(
        "changed one digit of the amount in line 4 of transfers.jsonl (seq 3, the payment to Shanghai):"
    )
    if "transfers.jsonl seq 3" not in _expect_failure(stage, ["ledger", "verify", str(bundle), "--key", key]):
        raise DemoError("the changed transfer was not named")


def reconcile(stage: Stage) -> None:
    """Shanghai signs its summary of the window; Beijing checks it and diffs it with its own: the
    shared trade matches, a trade only Shanghai recorded is reported and recorded."""
    stage.title("Reconciliation: signed summaries, diff by trade id")
    _ledger(
        stage,
        "shanghai",
        "transfer",
        "--id",
        "trade-bj-sh-0002-in",
        "--from",
        "partner-beijing",
        "--to",
        "pool",
        "--amount",
        "950000",
        "--trade-id",
        "trade-bj-sh-0002",
        "--partner",
        "beijing",
        "--currency",
        "CNY",
    )
    now = int(time.time() * 1000)
    window = f"{now - 3_600_000}/{now}"
    time.sleep(0.01)  # the summaries are issued after the window they describe has closed
    summary = stage.workdir / "shanghai-summary.json"
    _ledger(
        stage,
        "shanghai",
        "summary",
        "--partner",
        "beijing",
        "--window",
        window,
        "--margin-s",
        "0",
        "--out",
        str(summary),
    )
    key = load_identity(load_settings(stage.nodes["shanghai"].config, environ={})).public_key
    args = [
        "ledger",
        "reconcile",
        "--partner",
        "shanghai",
        "--window",
        window,
        "--margin-s",
        "0",
        "--their",
        str(summary),
        "--their-key",
        key,
        "--config",
        str(stage.nodes["beijing"].config),
    ]
    report = _expect_failure(stage, args)
    if "trade-bj-sh-0002: missing_here" not in report or f"{TRADE}:" in report:
        raise DemoError("reconciliation did not find exactly the injected discrepancy")
    _ledger(stage, "beijing", "discrepancies", "--open")
