"""Money and times read the same in every command's human output, against two real trading nodes:
amounts in major units with the currency (`600.00 CNY`, rates `100.00 CNY/unit-h`), never an integer
of minor units labelled with a currency and never "fen"; times as UTC ISO 8601 with a `Z`, never
epoch integers or `+00:00`. The table lists each command with what its output must show."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import cpnode_async
from tests.support.polling import eventually
from tests.support.samples import place_args
from tests.support.tasks import pool_node, python_task
from tests.support.trading import market

MAJOR = r"-?\d{1,3}(?:,\d{3})*\.\d{2} [A-Z]{3}\b"
MINOR_LABELLED = re.compile(r"(?<![\d.,])\d+ (?:CNY|USD|EUR|JPY)\b")
EPOCH = re.compile(r"\b1[6-9]\d{8}(?:\d{3})?\b")  # epoch seconds or milliseconds of this era
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?Z")
CLOCK = re.compile(r"(?<![T\d:])\d{2}:\d{2}:\d{2}")  # a time of day with no date
ISO_START = re.compile(r"\d{4}-\d{2}-\d{2}T")
FIELD = re.compile(r"^(\S[^:]*?)\s+: (.*)$")
MONEY_LABEL = re.compile(r"\b(amount|pending_amount|fee|balance|held|available|cost|credit limit)\b")


@dataclass(frozen=True)
class Case:
    """One command and what its human output must contain: an amount, a time (or neither)."""

    args: tuple[str, ...]
    money: bool = False
    times: bool = False
    node: str | None = "buyer"  # whose config it runs with (None: a command that takes none)


def problems(out: str) -> list[str]:
    """Every way `out` breaks the display rules."""
    found = [f"minor units labelled: {m.group(0)!r}" for m in MINOR_LABELLED.finditer(out)]
    found += [f"epoch integer: {m.group(0)!r}" for m in EPOCH.finditer(out)]
    if "fen" in re.findall(r"[a-z]+", out):
        found.append("says fen")
    if "+00:00" in out:
        found.append("a +00:00 offset instead of Z")
    found += [f"a time without its date: {m.group(0)!r}" for m in CLOCK.finditer(out)]
    found += [
        f"time not ISO 8601 with Z at {out[m.start() : m.start() + 30]!r}"
        for m in ISO_START.finditer(out)
        if not ISO.match(out, m.start())
    ]
    for line in out.splitlines():
        field = FIELD.match(line.strip())
        shown = "" if field is None else field.group(2).strip()
        if (
            field
            and MONEY_LABEL.search(field.group(1))
            and shown not in ("", "-")
            and not re.search(MAJOR, shown)
        ):
            found.append(f"field {field.group(1)!r} is not money: {field.group(2)!r}")
    return found


def check(out: str, case: Case) -> None:
    """`out` breaks no rule and shows what `case` says it shows."""
    assert problems(out) == [], (case.args, out)
    if case.money:
        assert re.search(MAJOR, out), (case.args, out)
    if case.times:
        assert ISO.search(out), (case.args, out)


def test_the_rules_catch_the_old_mixing() -> None:
    """What commands printed before: minor units with a currency, epoch times, `+00:00`, clock times
    without a date, a bare amount field; each is caught, and the formatted forms pass."""
    for bad in (
        "net 40000 CNY settled",
        "valid from 1796290663",
        "created : 2026-12-03T09:37:43+00:00",
        "  09:37:43Z started",
        "amount       : 60000",
        "3600 fen an hour",
    ):
        assert problems(bad), bad
    assert problems("amount : 600.00 CNY\nplaced : 2026-12-03T09:37:43Z\nrate 100.00 CNY/unit-h") == []


@pytest.fixture(name="columns")
def fixture_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide tables, so no cell is wrapped across lines."""
    monkeypatch.setenv("COLUMNS", "400")


async def test_every_command_shows_money_and_times_one_way(tmp_path: Path, columns: None) -> None:
    """Each command of the table prints without breaking a rule, and shows the money and times it
    should (so a command that stopped showing them fails too)."""
    del columns
    async with market(tmp_path) as m:
        start_ms = int(time.time() * 1000) - 1000
        configs = {
            "buyer": m.buyer.settings.base_dir / "node.toml",
            "seller": m.seller.settings.base_dir / "node.toml",
        }

        async def run(case: Case) -> str:
            done = await cpnode_async(*case.args, config=None if case.node is None else configs[case.node])
            assert done.code == 0, (case.args, done.output)
            return done.out

        placed = await run(Case(place_args(units=2, hours=3)))
        order_id = re.search(r"^order\s+: (\S+)", placed, re.M)
        assert order_id is not None, placed
        order = order_id.group(1)
        await run(Case(("orders", "settle", order, "--used-hours", "2")))
        token = await run(Case(("consumers", "token", "alice")))
        token_id = re.search(r"^token id\s+: (\S+)", token, re.M)
        assert token_id is not None, token
        await run(Case(("consumers", "revoke-token", "alice", token_id.group(1))))
        await run(Case(("ledger", "checkpoint")))
        await run(Case(("ledger", "export", "--out", str(tmp_path / "bundle"))))
        key = m.buyer.ctx.identity.public_key  # type: ignore[union-attr]
        end_ms = int(time.time() * 1000) + 1
        # the window must have closed before it is summarised
        await eventually(lambda: time.time() * 1000 > end_ms, 5, "the window closed")
        window = f"{start_ms}/{end_ms}"
        cases = [
            (placed, Case(("orders", "place"), money=True, times=True)),
            *[
                (await run(case), case)
                for case in (
                    Case(("orders", "show", order), money=True, times=True),
                    Case(("orders", "list"), money=True),
                    Case(("orders", "sales"), money=True, node="seller"),
                    Case(("consumers", "list"), money=True),
                    Case(("consumers", "show", "alice"), money=True),
                    Case(
                        ("consumers", "deposit", "alice", "--amount", "100", "--id", "d-display"), money=True
                    ),
                    Case(("consumers", "tokens", "alice"), times=True),
                    Case(("partners", "list"), times=True),
                    Case(("partners", "discovered")),
                    Case(("keys", "show"), times=True),
                    Case(("catalog", "show"), money=True),
                    Case(("market", "match", "--units", "1", "--hours", "2"), money=True),
                    Case(("ledger", "balances"), money=True),
                    Case(("ledger", "accounts", "list"), money=True),
                    Case(("ledger", "show", f"{order}:hold"), money=True, times=True),
                    Case(("ledger", "verify", str(tmp_path / "bundle"), "--key", key), times=True, node=None),
                    Case(
                        (
                            "ledger",
                            "reconcile",
                            "--partner",
                            "shanghai",
                            "--window",
                            window,
                            "--margin-s",
                            "0",
                        ),
                        times=True,
                    ),
                    Case(("ledger", "discrepancies")),
                    Case(("pools", "gateway-code", "gw-pool"), times=True),
                    Case(("tasks", "list")),
                    Case(("migrations", "list")),
                    Case(("status",)),
                    Case(("accounts", "events"), times=True),
                    Case(("accounts", "federated")),
                    Case(("supervisors", "list")),
                    Case(("strategies", "list")),
                    Case(("statements", "list")),
                )
            ],
        ]
        for out, case in cases:
            check(out, case)


async def test_task_commands_show_money_and_times_one_way(tmp_path: Path, columns: None) -> None:
    """A task run on a local pool: `tasks show` (with its history), `tasks list`, the order it
    settled and the pool's offers follow the same rules."""
    del columns
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task("print('hello')"))
        done = await node.wait(task["id"])
        config = node.server.settings.base_dir / "node.toml"
        for case in (
            Case(("tasks", "show", task["id"]), money=True, times=True),
            Case(("tasks", "list"), money=True),
            Case(("orders", "show", done["order_id"]), money=True, times=True),
            Case(("pools", "list"), money=True),
            Case(("plugins", "list")),
        ):
            result = await cpnode_async(*case.args, config=config)
            assert result.code == 0, (case.args, result.output)
            check(result.out, case)
        shown = (await cpnode_async("tasks", "show", task["id"], config=config)).out
        assert len(re.findall(rf"^  {ISO.pattern} ", shown, re.M)) >= 3, shown  # history lines, dated
