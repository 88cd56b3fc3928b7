"""Demo steps of trading: a consumer on Beijing deposits money and buys compute from a Shanghai
offer; both ledgers hold the trade under one id; it is settled for part of the ordered hours; the
two nodes reconcile over the peer API; an auditor verifies Shanghai's export with its key alone."""

from __future__ import annotations

import json
import time
from typing import Any

from node.config import load_settings
from node.demo.stage import DemoError, Stage
from node.identity import load_identity
from node.money import format_money

CREDIT_LIMIT = 100_000_000  # fen: the credit line Shanghai grants Beijing (¥1,000,000)
DEPOSIT = 50_000_000  # fen: what alice pays in (¥500,000)
OFFER = "shanghai-1"  # Ascend-910B ×8 at ¥19,000 per unit-hour, ¥19,950 for Beijing (+5 %)
UNITS, HOURS, USED_HOURS = 2, 4, 3
FEE_BP = 300  # Shanghai's platform fee
TRADE: dict[str, Any] = {}


def _cli(stage: Stage, node: str, *args: str, show: bool = True, echo: bool | None = None) -> str:
    return stage.cli([*args, "--config", str(stage.nodes[node].config)], show=show, echo=echo)


def _json(stage: Stage, node: str, *args: str, echo: bool = True) -> Any:
    """Run a command with --json (its command line echoed as run) and return what it printed."""
    return json.loads(_cli(stage, node, *args, "--json", show=False, echo=echo))


def _balances(stage: Stage, node: str, accounts: list[str]) -> dict[str, dict[str, int]]:
    """Print the accounts' net held (pending) and posted amounts (credits − debits); return them."""
    args = [part for account in accounts for part in ("--account", account)]
    rows = {row["id"]: row for row in _json(stage, node, "ledger", "balances", *args)}
    for account in accounts:
        row = rows[account]
        held = format_money(row["credits_pending"] - row["debits_pending"], row["currency"])
        posted = format_money(row["credits_posted"] - row["debits_posted"], row["currency"])
        stage.say(f"  {account:<18} held {held:>18}   posted {posted:>18}")
    return rows


def configure(stage: Stage) -> None:
    """Shanghai takes a platform fee on what it sells."""
    with stage.nodes["shanghai"].config.open("a", encoding="utf-8") as handle:
        handle.write(f"\n[trading]\nplatform_fee_bp = {FEE_BP}\n")


def grant_credit(stage: Stage) -> None:
    """Shanghai's operator grants Beijing a credit line: its ledger will refuse trades beyond it."""
    stage.title("Shanghai grants Beijing a credit line (the agreement's credit limit)")
    _cli(stage, "shanghai", "partners", "update", "beijing", "--credit-limit", str(CREDIT_LIMIT))


def buy(stage: Stage) -> None:
    """alice deposits on Beijing and buys Shanghai's offer: Beijing holds her money, Shanghai accepts
    with a signed answer and holds what Beijing owes it; both ledgers show the same trade id."""
    stage.title("A consumer on Beijing buys a Shanghai offer (cpnode consumers, cpnode orders)")
    TRADE["start_ms"] = int(time.time() * 1000)
    _cli(stage, "beijing", "consumers", "create", "alice")
    _cli(stage, "beijing", "consumers", "deposit", "alice", "--amount", str(DEPOSIT), "--id", "alice-topup-1")
    _cli(stage, "beijing", "catalog", "sync", show=False)
    order = _json(
        stage, "beijing", "orders", "place", "--consumer", "alice", "--offer", OFFER,
        "--units", str(UNITS), "--hours", str(HOURS),
    )  # fmt: skip
    stage.say(
        f"order {order['id']}: {order['state']}, {format_money(order['amount'], order['currency'])} held; "
        f"receipt {order['receipt_sha256'][:16]}…"
    )
    if order["state"] != "accepted":
        raise DemoError(f"the order was not accepted: {order}")
    TRADE.update(order)
    stage.say("beijing holds alice's money in escrow and owes shanghai (pending):")
    held = _balances(stage, "beijing", ["consumer:alice", "escrow:orders", "partner:shanghai"])
    stage.say(
        "shanghai holds what beijing owes it for the pool and its fee (pending), within the credit line:"
    )
    _cli(stage, "shanghai", "orders", "sales")
    sold = _balances(stage, "shanghai", ["partner:beijing", "provider:sh-npu", "fees:platform"])
    if (
        held["partner:shanghai"]["credits_pending"] != order["amount"]
        or sold["partner:beijing"]["debits_pending"] != order["amount"]
    ):
        raise DemoError("the two ledgers do not hold the same amount")


def settle(stage: Stage) -> None:
    """The consumer used 3 of the 4 hours: both sides post that much and release the rest."""
    stage.title(f"Settle: {USED_HOURS} of {HOURS} hours used (cpnode orders settle)")
    order = _json(stage, "beijing", "orders", "settle", TRADE["id"], "--used-hours", str(USED_HOURS))
    used = UNITS * USED_HOURS * TRADE["price_per_unit_hour"]
    stage.say(
        f"order {order['id']}: {order['state']}, {format_money(order['settled_amount'], order['currency'])} "
        f"paid; settlement {order['settlement_sha256'][:16]}…"
    )
    if (order["state"], order["settled_amount"]) != ("settled", used):
        raise DemoError(f"the order was not settled for {used}: {order}")
    paid = _balances(stage, "beijing", ["consumer:alice", "escrow:orders", "partner:shanghai"])
    earned = _balances(stage, "shanghai", ["partner:beijing", "provider:sh-npu", "fees:platform"])
    fee = used * (TRADE["amount"] * FEE_BP // 10_000) // TRADE["amount"]
    if (
        paid["consumer:alice"]["debits_posted"] != used
        or paid["partner:shanghai"]["credits_posted"] != used
        or earned["partner:beijing"]["debits_posted"] != used
        or earned["fees:platform"]["credits_posted"] != fee
        or earned["provider:sh-npu"]["credits_posted"] != used - fee
    ):
        raise DemoError("the settled balances are not what the trade says")


def reconcile(stage: Stage) -> None:
    """Beijing fetches Shanghai's signed summary of the trade's window over the peer API and finds
    both ledgers agree."""
    stage.title("Reconcile over the peer API (cpnode ledger reconcile --partner shanghai)")
    end_ms = int(time.time() * 1000) + 1
    while time.time() * 1000 <= end_ms:  # the window must have closed before it is summarised
        time.sleep(0.005)
    _cli(
        stage, "beijing", "ledger", "reconcile", "--partner", "shanghai",
        "--window", f"{TRADE['start_ms']}/{end_ms}", "--margin-s", "0",
    )  # fmt: skip


def audit(stage: Stage) -> None:
    """Shanghai exports an audit bundle; it verifies with nothing but Shanghai's public key."""
    stage.title("Audit Shanghai's ledger with its public key alone (cpnode ledger export / verify)")
    bundle = stage.workdir / "audit-shanghai"
    _cli(stage, "shanghai", "ledger", "export", "--out", str(bundle))
    key = load_identity(load_settings(stage.nodes["shanghai"].config, environ={})).public_key
    stage.cli(["ledger", "verify", str(bundle), "--key", key])
