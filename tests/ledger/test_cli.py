"""`cpnode ledger …` end to end: operator commands on a node's database (both backends), offline
verification in a bare process, and reconciliation between two nodes through signed summary files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import TransferKind, TransferRequest, submit
from node.config import ConfigError, load_settings
from node.db import make_engine
from node.identity import load_identity
from tests.support.cli import cpnode
from tests.support.nodes import make_node_dir

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000


def _node(tmp_path: Path, name: str, db_url: str | None = None) -> str:
    return str(make_node_dir(tmp_path, name, db_url=db_url))


def _books(config: str) -> None:
    for args in (
        ["bank", "--currency", "CNY", "--kind", "external"],
        ["alice", "--currency", "CNY", "--kind", "consumer", "--no-overdraft"],
        ["pool", "--currency", "CNY", "--kind", "provider"],
    ):
        assert cpnode("ledger", "accounts", "create", *args, "--config", config)[0] == 0
    transfers = [
        ["--id", "fund", "--from", "bank", "--to", "alice", "--amount", "1000", "--currency", "CNY"],
        [
            "--id",
            "h1",
            "--kind",
            "pending",
            "--from",
            "alice",
            "--to",
            "pool",
            "--amount",
            "400",
            "--currency",
            "CNY",
        ],
        ["--id", "p1", "--kind", "post", "--pending-id", "h1", "--amount", "350"],
    ]
    for args in transfers:
        assert cpnode("ledger", "transfer", *args, "--config", config)[0] == 0


def test_operator_commands(tmp_path: Path, db_url: str) -> None:
    """Create accounts, record a transfer, a hold and its post, read balances and a transfer with its proof."""
    config = _node(tmp_path, "alpha", db_url)
    _books(config)
    code, out, _ = cpnode("ledger", "balances", "--account", "alice", "--json", "--config", config)
    assert code == 0
    [alice] = json.loads(out)
    assert (alice["debits_posted"], alice["credits_posted"], alice["debits_pending"]) == (350, 1000, 0)

    def transfer_big(amount: str, *more: str) -> tuple[int, str, str]:
        """`cpnode ledger transfer` of `amount` from alice to pool under the id `big`."""
        return cpnode(
            "ledger",
            "transfer",
            "--id",
            "big",
            "--from",
            "alice",
            "--to",
            "pool",
            "--amount",
            amount,
            "--currency",
            "CNY",
            *more,
            "--config",
            config,
        )

    code, _, err = transfer_big("5000")
    assert code == 1
    code, out, _ = transfer_big("1", "--json")
    assert (code, json.loads(out)["status"]) == (1, "id_already_failed")
    assert cpnode("ledger", "checkpoint", "--config", config)[0] == 0
    code, out, _ = cpnode("ledger", "show", "p1", "--proof", "--json", "--config", config)
    shown = json.loads(out)
    assert (code, shown["seq"], shown["pending_amount"], shown["proof"]["tree_size"]) == (0, 2, 400, 3)
    code, _, err = cpnode("ledger", "show", "big", "--config", config)
    assert code == 1
    assert "failed: exceeds_credits" in err
    assert cpnode("ledger", "audit", "--config", config)[0] == 0
    code, _, err = cpnode("ledger", "accounts", "close", "nobody", "--config", config)
    assert code == 1
    assert "does not exist" in err


def _bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}


def test_export_then_verify_in_a_bare_process(tmp_path: Path, db_url: str) -> None:
    """A bundle exported by the CLI verifies in a separate process with no config, node or database
    (empty working directory, no CPNODE_ variables); a flipped byte makes it exit 1 naming the seq."""
    config = _node(tmp_path, "alpha", db_url)
    _books(config)
    bundle = tmp_path / "bundle"
    assert cpnode("ledger", "export", "--out", str(bundle), "--config", config)[0] == 0
    public_key = load_identity(load_settings(Path(config), environ={})).public_key
    bare = tmp_path / "elsewhere"
    bare.mkdir()
    command = [sys.executable, "-m", "node", "ledger", "verify", str(bundle), "--key", public_key, "--json"]
    ok = subprocess.run(
        command, cwd=bare, env=_bare_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    lines = (bundle / "transfers.jsonl").read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"amount":400', b'"amount":401')
    (bundle / "transfers.jsonl").write_bytes(b"\n".join(lines))
    bad = subprocess.run(
        command[:-1], cwd=bare, env=_bare_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 1
    assert "transfers.jsonl seq 1" in bad.stderr
    wrong_key = subprocess.run(
        [*command[:-3], "--key", "ed25519:nope"],
        cwd=bare,
        env=_bare_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong_key.returncode == 2


def test_export_since_and_window(tmp_path: Path) -> None:
    """`export --since` continues from the previous bundle's checkpoint; `--from/--to` take ISO times."""
    config = _node(tmp_path, "alpha")
    _books(config)
    first, second = tmp_path / "one", tmp_path / "two"
    assert cpnode("ledger", "export", "--out", str(first), "--config", config)[0] == 0
    assert (
        cpnode(
            "ledger",
            "transfer",
            "--id",
            "later",
            "--from",
            "bank",
            "--to",
            "pool",
            "--amount",
            "5",
            "--currency",
            "CNY",
            "--config",
            config,
        )[0]
        == 0
    )
    code, out, _ = cpnode(
        "ledger",
        "export",
        "--out",
        str(second),
        "--since",
        str(first / "checkpoint"),
        "--json",
        "--config",
        config,
    )
    assert (code, json.loads(out)["first_seq"], json.loads(out)["end_seq"]) == (0, 3, 4)
    code, _, err = cpnode(
        "ledger",
        "export",
        "--out",
        str(tmp_path / "w"),
        "--from",
        "2030-01-02",
        "--to",
        "2030-01-01",
        "--config",
        config,
    )
    assert (code, "--from must be before --to" in err) == (2, True)
    code, _, err = cpnode(
        "ledger", "export", "--out", str(tmp_path / "w"), "--from", "yesterday", "--config", config
    )
    assert (code, "not a time" in err) == (2, True)
    public_key = load_identity(load_settings(Path(config), environ={})).public_key
    verify = ["ledger", "verify", str(second), "--key", public_key]
    code, out, _ = cpnode(*verify, "--previous", str(first), "--json")
    assert (code, json.loads(out)["chained"], json.loads(out)["previous_size"]) == (0, True, 3)
    code, _, err = cpnode(*verify, "--previous", str(second))
    assert code == 1
    assert "previous-bundle: starts from a checkpoint of 3 transfers" in err
    code, _, err = cpnode(*verify, "--previous", str(tmp_path / "nowhere"))
    assert (code, "is not a directory" in err) == (2, True)


def test_ledger_config_section(tmp_path: Path) -> None:
    """The [ledger] section is validated and overridable from the environment, naming the bad key."""
    config = make_node_dir(tmp_path, "alpha", extra_toml="[ledger]\ncheckpoint_every_transfers = 50\n")
    settings = load_settings(config, environ={"CPNODE_LEDGER_SWEEP_EVERY_S": "2.5"})
    assert (settings.ledger.checkpoint_every_transfers, settings.ledger.sweep_every_s) == (50, 2.5)
    assert settings.ledger.checkpoint_every_s == 60
    with pytest.raises(ConfigError, match=r"'ledger\.sweep_every_s'"):
        load_settings(config, environ={"CPNODE_LEDGER_SWEEP_EVERY_S": "0"})
    bad = make_node_dir(tmp_path, "beta", extra_toml="[ledger]\ncheckpoint_every = 5\n")
    with pytest.raises(ConfigError, match=r"'ledger\.checkpoint_every': unknown key"):
        load_settings(bad, environ={})


def test_reconcile_two_nodes_through_signed_summaries(tmp_path: Path, db_url: str) -> None:
    """Beta signs its summary; alpha checks beta's signature, finds the injected differences, records
    them, writes a report, and corrects one with a new transfer; a forged summary is refused."""
    alpha = _node(tmp_path, "alpha", db_url)
    beta = _node(tmp_path, "beta")
    beta_key = load_identity(load_settings(Path(beta), environ={})).public_key
    window = f"{10 * HOUR}/{11 * HOUR}"
    for config, account, partner in ((alpha, "beta-acct", "beta"), (beta, "alpha-acct", "alpha")):
        cpnode(
            "ledger",
            "accounts",
            "create",
            account,
            "--currency",
            "CNY",
            "--kind",
            "partner",
            "--partner",
            partner,
            "--config",
            config,
        )
        cpnode(
            "ledger",
            "accounts",
            "create",
            "pool",
            "--currency",
            "CNY",
            "--kind",
            "provider",
            "--config",
            config,
        )

    def record(config: str, trade: str, debit: str, credit: str, amount: int, partner: str) -> None:
        engine = make_engine(load_settings(Path(config), environ={}).database_url)
        request = TransferRequest(
            f"{trade}-leg", TransferKind.SINGLE, debit, credit, "CNY", amount, trade_id=trade, partner=partner
        )
        assert submit(engine, [request], now=10 * HOUR + 1_000)[0].ok
        engine.dispose()

    record(alpha, "t-ok", "pool", "beta-acct", 100, "beta")
    record(beta, "t-ok", "alpha-acct", "pool", 100, "alpha")
    record(alpha, "t-amount", "pool", "beta-acct", 70, "beta")
    record(beta, "t-amount", "alpha-acct", "pool", 60, "alpha")
    record(beta, "t-only-beta", "alpha-acct", "pool", 5, "alpha")
    summary = tmp_path / "beta-summary.json"
    code, _, _ = cpnode(
        "ledger", "summary", "--partner", "alpha", "--window", window, "--out", str(summary), "--config", beta
    )
    assert code == 0
    report = tmp_path / "report.txt"

    def reconcile(*more: str) -> tuple[int, str, str]:
        """`cpnode ledger reconcile` on alpha of beta's summary, with `more` options."""
        return cpnode(
            "ledger",
            "reconcile",
            "--partner",
            "beta",
            "--window",
            window,
            "--their",
            str(summary),
            "--their-key",
            beta_key,
            *more,
            "--config",
            alpha,
        )

    code, out, err = reconcile("--report", str(report), "--json")
    assert code == 1, err
    found = {(d["trade_id"], d["kind"]) for d in json.loads(out)["discrepancies"]}
    assert found == {("t-amount", "amount"), ("t-only-beta", "missing_here")}
    assert "t-only-beta: missing_here" in report.read_text()
    code, out, _ = cpnode("ledger", "discrepancies", "--open", "--json", "--config", alpha)
    amount = next(d for d in json.loads(out) if d["kind"] == "amount")
    code, _, _ = cpnode(
        "ledger",
        "correct",
        str(amount["id"]),
        "--id",
        "fix-1",
        "--from",
        "beta-acct",
        "--to",
        "pool",
        "--amount",
        "10",
        "--currency",
        "CNY",
        "--config",
        alpha,
    )
    assert code == 0
    code, out, _ = cpnode("ledger", "discrepancies", "--open", "--json", "--config", alpha)
    assert [d["kind"] for d in json.loads(out)] == ["missing_here"]
    forged = json.loads(summary.read_text())
    forged["trades"][0]["net"] += 1
    summary.write_text(json.dumps(forged))
    code, _, err = reconcile()
    assert code == 1
    assert "does not verify" in err
