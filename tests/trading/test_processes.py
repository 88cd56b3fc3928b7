"""Trading between two real `cpnode run` processes, driven only through the command line an
operator uses: pin partners with a credit limit, open and fund a consumer, place and settle an
order, reconcile over the peer API, and verify the seller's audit export with its key alone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import load_settings
from node.identity import load_identity
from tests.support.cli import cpnode
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.samples import place_args
from tests.support.trading import BASE_TOML, offer, trading_toml

# Node processes start from fresh interpreters here, as operators start them (`cpnode run`).
pytestmark = pytest.mark.fresh_processes


@pytest.fixture(name="processes")
def fixture_processes(tmp_path: Path, db_urls: tuple[str | None, str | None]) -> Iterator[tuple[Path, Path]]:
    """Seller and buyer configs, each node running as a `cpnode run` process."""
    seller = make_node_dir(
        tmp_path,
        "shanghai",
        db_url=db_urls[0],
        extra_toml=BASE_TOML + trading_toml() + offer("shanghai", "gpu", 4, 10_000),
    )
    buyer = make_node_dir(tmp_path, "beijing", db_url=db_urls[1], extra_toml=BASE_TOML + trading_toml())
    started = []
    try:
        for config in (seller, buyer):
            process = NodeProcess(config)
            process.start()
            started.append(process)
        yield seller, buyer
    finally:
        for process in started:
            assert process.stop() == 0, process.log()


def test_trade_between_processes_through_the_cli(processes: tuple[Path, Path], tmp_path: Path) -> None:
    """The whole flow through `cpnode` commands against two node processes, ending in a clean
    reconciliation and an audit bundle that verifies with the seller's public key."""
    seller, buyer = processes
    urls = {c: json.loads((c.parent / "data" / "run.json").read_text())["url"] for c in (seller, buyer)}
    keys = {c: load_identity(load_settings(c, environ={})).public_key for c in (seller, buyer)}
    cpnode(
        "partners",
        "add",
        "beijing",
        "--url",
        urls[buyer],
        "--key",
        keys[buyer],
        "--credit-limit",
        "100000",
        "--json",
        config=seller,
    ).json()
    cpnode(
        "partners", "add", "shanghai", "--url", urls[seller], "--key", keys[seller], "--json", config=buyer
    ).json()
    assert cpnode("catalog", "sync", "--json", config=buyer).json()[0]["outcome"] == "ok"
    start_ms = int(time.time() * 1000)
    cpnode("consumers", "create", "alice", "--json", config=buyer).json()
    assert (
        cpnode(
            "consumers", "deposit", "alice", "--amount", "200000", "--id", "dep-1", "--json", config=buyer
        ).json()["available"]
        == 200_000
    )
    order = cpnode(*place_args("shanghai-gpu", "--json", units=2, hours=3), config=buyer).json()
    assert (order["state"], order["amount"], order["source"]) == ("accepted", 60_000, "partner:shanghai")
    code, output = cpnode(*place_args(units=2, hours=3), config=buyer).merged
    assert code == 1
    assert "credit_limit_exceeded" in output  # 120,000 would exceed the 100,000 line
    sales = sorted(
        (s["state"], s["reason"], s["trade_id"] == order["id"])
        for s in cpnode("orders", "sales", "--json", config=seller).json()
    )
    assert sales == [("accepted", None, True), ("refused", "credit_limit_exceeded", False)]
    settled = cpnode("orders", "settle", order["id"], "--used-hours", "1", "--json", config=buyer).json()
    assert (settled["state"], settled["settled_amount"]) == ("settled", 20_000)
    assert cpnode("consumers", "show", "alice", "--json", config=buyer).json()["available"] == 180_000
    balances = {row["id"]: row for row in cpnode("ledger", "balances", "--json", config=seller).json()}
    assert balances["partner:beijing"]["debits_posted"] == 20_000
    assert balances["fees:platform"]["credits_posted"] == 1_000
    second = cpnode(
        *place_args("shanghai-gpu", "--source", "partner:shanghai", "--json"), config=buyer
    ).json()
    assert cpnode("orders", "cancel", second["id"], "--json", config=buyer).json()["state"] == "cancelled"
    states = {
        o["id"]: o["state"]
        for o in cpnode("orders", "list", "--consumer", "alice", "--json", config=buyer).json()
    }
    assert states[order["id"]] == "settled"
    assert states[second["id"]] == "cancelled"
    shown = cpnode("orders", "show", order["id"], "--json", config=buyer).json()
    assert shown["receipt"]["acceptance"]["issuer"] == "shanghai"
    assert shown["settlement_record"]["receipt"]["state"] == "settled"
    assert [c["id"] for c in cpnode("consumers", "list", "--json", config=buyer).json()] == ["alice"]
    code, output = cpnode("orders", "settle", second["id"], "--used-hours", "1", config=buyer).merged
    assert (code, "bad_order_state" in output) == (1, True)
    end_ms = int(time.time() * 1000) + 1
    while time.time() * 1000 <= end_ms:
        time.sleep(0.005)  # the window must have closed before the seller summarises it
    code, output = cpnode(
        "ledger",
        "reconcile",
        "--partner",
        "shanghai",
        "--window",
        f"{start_ms}/{end_ms}",
        "--margin-s",
        "0",
        config=buyer,
    ).merged
    assert code == 0, output
    assert "trades: 2 here, 2 at shanghai" in output
    bundle = tmp_path / "audit"
    cpnode("ledger", "export", "--out", str(bundle), "--json", config=seller).json()
    verified = cpnode("ledger", "verify", str(bundle), "--key", keys[seller])
    assert verified.code == 0, verified.output
    assert "OK" in verified.out
