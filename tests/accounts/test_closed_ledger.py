"""Consumers an older database left active with their ledger account closed (the ledger close went
through, the status write did not, before `closing` existed): `cpnode db check` lists them with
what to do, `--repair` marks closed those with nothing left on them and leaves the others."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import ledger
from node.accounts import store
from node.config import load_settings
from node.db import make_engine
from node.trading import books
from tests.support.cli import cpnode
from tests.support.nodes import make_node_dir, running_node


def test_db_check_finds_and_repairs_consumers_whose_ledger_account_is_closed(
    tmp_path: Path, db_url: str
) -> None:
    """`old` (empty, ledger closed) is found and repaired to `closed` with a close in its audit
    trail; `rich` (ledger closed with 500 on it) is found and left as it is, saying why; a
    consumer with an open ledger account is not listed."""
    config = make_node_dir(tmp_path, "a", db_url=None if db_url.startswith("sqlite") else db_url)
    assert cpnode("db", "upgrade", config=config).code == 0
    engine = make_engine(load_settings(config, environ={}).database_url)
    try:
        for name in ("old", "rich", "fine"):
            [made] = ledger.create_accounts(engine, [books.consumer_spec(name, "CNY")])
            assert made.ok, made
        assert books.deposit(engine, "rich", "d-rich", 500, "CNY").ok
        for name in ("old", "rich"):  # what a close that failed half-way used to leave
            ledger.close_account(engine, f"consumer:{name}")

        found = cpnode("db", "check", "--json", config=config)
        assert found.code == 1, found
        rows = {r["consumer"]: r for r in json.loads(found.output)["closed_ledger_consumers"]}
        assert sorted(rows) == ["old", "rich"]
        assert rows["old"]["outcome"].startswith("run `cpnode db check --repair`"), rows
        assert "balance is 500" in rows["rich"]["outcome"], rows

        repaired = cpnode("db", "check", "--repair", "--json", config=config)
        assert repaired.code == 1, repaired  # rich is left
        rows = {r["consumer"]: r for r in json.loads(repaired.output)["closed_ledger_consumers"]}
        assert rows["old"]["outcome"] == "marked closed", rows
        assert "balance is 500" in rows["rich"]["outcome"], rows
        assert store.get(engine, "consumer", "old").status == "closed"
        assert store.get(engine, "consumer", "rich").status == "active"
        events = store.events(engine, "consumer", "old")
        assert [(e.action, e.actor) for e in events][-2:] == [
            ("close", "cpnode db check"),
            ("closed", "cpnode db check"),
        ], events

        again = cpnode("db", "check", "--json", config=config)
        assert [r["consumer"] for r in json.loads(again.output)["closed_ledger_consumers"]] == ["rich"]
        assert ledger.get_account(engine, "consumer:rich").balance.credits_posted == 500  # untouched
    finally:
        engine.dispose()


async def test_the_node_warns_at_start_of_a_consumer_whose_ledger_account_is_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node started on such a database logs the consumer, its status and what to do."""
    config = make_node_dir(tmp_path, "a", extra_toml="[scheduler]\nenabled = false\n")
    assert cpnode("db", "upgrade", config=config).code == 0
    engine = make_engine(load_settings(config, environ={}).database_url)
    try:
        [made] = ledger.create_accounts(engine, [books.consumer_spec("old", "CNY")])
        assert made.ok, made
        ledger.close_account(engine, "consumer:old")
    finally:
        engine.dispose()
    with caplog.at_level(logging.WARNING, logger="cpnode.accounts"):
        async with running_node(config):
            pass
    warned = [r.getMessage() for r in caplog.records if r.name == "cpnode.accounts"]
    assert warned == [
        "consumer old is active but its ledger account is closed: run `cpnode db check --repair`"
        " to mark it closed as its ledger account is"
    ], warned
