"""Statements through `cpnode statements` and `/api/v1/statements` on a real node: issue, list,
show, export as JSON, CSV and HTML, verify offline against `cpnode ledger export --period` (an
edited line and a wrong bundle fail), and a consumer token that sees only its own statements."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ledger.statement import CLOSE_MARGIN_MS, next_period, period_of
from node.config import load_settings
from node.db import open_database
from node.identity import load_identity
from node.statements import store
from node.statements.component import ISSUE_JOB, last_closed_month
from tests.statements.support import ALICE, BOB, NOVEMBER_CLOSING, at, fill_november
from tests.support.cli import cpnode, cpnode_async
from tests.support.nodes import make_node_dir, running_node
from tests.support.trading import admin_session


def _node(tmp_path: Path, db_url: str) -> str:
    """A node whose ledger holds October and November 2026 (written before the node runs)."""
    config = make_node_dir(tmp_path, "alpha", db_url=None if db_url.startswith("sqlite") else db_url)
    engine = open_database(load_settings(config, environ={}))
    try:
        fill_november(engine)
    finally:
        engine.dispose()
    return str(config)


def _public_key(config: str) -> str:
    return load_identity(load_settings(Path(config), environ={})).public_key


def test_issue_export_and_verify_from_the_cli(tmp_path: Path, db_url: str) -> None:
    """Issue November for everyone, export Alice's statement in three forms, and verify it against
    the month's bundle; an edited line fails naming the line, another month's bundle fails."""
    config = _node(tmp_path, db_url)
    issued = cpnode("statements", "issue", "--period", "2026-11", "--json", "--config", config).json()
    assert sorted(s["account"] for s in issued) == sorted([ALICE, BOB, "partner:beta"])
    listed = cpnode("statements", "list", "--consumer", "alice", "--json", "--config", config).json()
    assert [(s["number"], s["period"]) for s in listed] == [(2, "2026-11"), (1, "2026-10")]
    shown = cpnode("statements", "show", "consumer:alice:2", "--config", config)
    assert shown.code == 0
    assert "1,371.55 CNY" in shown.out
    assert "o1:hold:post" in shown.out
    out = tmp_path / "out"
    assert cpnode("statements", "export", "consumer:alice:2", "--out", str(out), "--config", config).code == 0
    document, sheet, page = (out / f"consumer-alice-2.{form}" for form in ("json", "csv", "html"))
    doc = json.loads(document.read_bytes())
    assert doc["closing_balance"] == NOVEMBER_CLOSING
    rows = sheet.read_text().splitlines()
    assert rows[2].endswith(",opening,,,,,500.00")
    assert rows[-1].endswith(",closing,,,,,1371.55")
    assert len(rows) == 2 + 1 + len(doc["lines"]) + 1
    html = page.read_text()
    assert "1,371.55 CNY" in html
    assert "<script" not in html
    assert "href=" not in html
    assert "src=" not in html

    month = tmp_path / "month"
    done = cpnode(
        "statements",
        "export",
        "--period",
        "2026-11",
        "--format",
        "csv",
        "--out",
        str(month),
        "--json",
        "--config",
        config,
    )
    assert sorted(p.name for p in month.iterdir()) == [
        "consumer-alice-2.csv",
        "consumer-bob-2.csv",
        "partner-beta-2.csv",
    ]
    assert len(done.json()["statements"]) == 3
    assert cpnode("statements", "export", "--out", str(month), "--config", config).code == 2

    bundle = tmp_path / "bundle-nov"
    assert (
        cpnode("ledger", "export", "--out", str(bundle), "--period", "2026-11", "--config", config).code == 0
    )
    key = _public_key(config)
    ok = cpnode("statements", "verify", str(document), "--bundle", str(bundle), "--key", key, "--json").json()
    assert ok["ok"] is True
    assert ok["lines"] == 5

    doc["lines"][1]["amount"] = -12_000
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    code, output = cpnode("statements", "verify", str(edited), "--bundle", str(bundle), "--key", key).merged
    assert code == 1
    assert "statement line 2: amount is -12000" in output
    assert "o1:hold:post" in output

    october = tmp_path / "bundle-oct"
    assert (
        cpnode("ledger", "export", "--out", str(october), "--period", "2026-10", "--config", config).code == 0
    )
    code, output = cpnode(
        "statements", "verify", str(document), "--bundle", str(october), "--key", key
    ).merged
    assert code == 1
    assert "not the period 2026-11" in output


def test_one_consumers_or_partners_statement_from_the_cli(tmp_path: Path, db_url: str) -> None:
    """`--partner` and `--consumer` issue that account's statement alone (its missing October
    first), the partner's verifies against the month's bundle; an unknown name, or both options,
    is refused and stores nothing."""
    config = _node(tmp_path, db_url)

    def issue(*who: str) -> Any:
        return cpnode("statements", "issue", "--period", "2026-11", *who, "--json", "--config", config)

    code, output = issue("--consumer", "nobody").merged
    assert (code, "no account of consumer 'nobody'" in output) == (1, True), output
    code, output = issue("--partner", "nobody").merged
    assert (code, "no account of partner 'nobody'" in output) == (1, True), output
    with pytest.raises(SystemExit) as both:
        issue("--consumer", "alice", "--partner", "beta")
    assert both.value.code == 2
    assert cpnode("statements", "list", "--json", "--config", config).json() == []

    [partner] = issue("--partner", "beta").json()
    assert (partner["id"], partner["issued_now"]) == ("partner:beta:2", True)
    [consumer] = issue("--consumer", "alice").json()
    assert consumer["id"] == "consumer:alice:2"
    listed = cpnode("statements", "list", "--json", "--config", config).json()
    assert sorted(s["id"] for s in listed) == [
        "consumer:alice:1",
        "consumer:alice:2",
        "partner:beta:1",
        "partner:beta:2",
    ]

    out, bundle = tmp_path / "out", tmp_path / "bundle"
    assert cpnode("statements", "export", "partner:beta:2", "--out", str(out), "--config", config).code == 0
    assert (
        cpnode("ledger", "export", "--out", str(bundle), "--period", "2026-11", "--config", config).code == 0
    )
    verified = cpnode(
        "statements",
        "verify",
        str(out / "partner-beta-2.json"),
        "--bundle",
        str(bundle),
        "--key",
        _public_key(config),
        "--json",
    ).json()
    assert (verified["ok"], verified["account"]) == (True, "partner:beta"), verified


def test_a_month_not_closed_is_refused_by_the_cli(tmp_path: Path, db_url: str) -> None:
    """The current month (and the next) cannot be issued: exit 1, a clear message, nothing stored."""
    config = _node(tmp_path, db_url)
    current = period_of(int(time.time() * 1000))
    for period in (current, next_period(current)):
        code, output = cpnode("statements", "issue", "--period", period, "--config", config).merged
        assert code == 1
        assert f"period {period} is not closed" in output
    code, output = cpnode("statements", "issue", "--period", "2026-13", "--config", config).merged
    assert code == 1
    assert "YYYY-MM" in output
    assert cpnode("statements", "list", "--json", "--config", config).json() == []


async def _call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as response:
        text = await response.text()
        return response.status, json.loads(text) if response.content_type == "application/json" else text


async def test_a_consumer_sees_only_its_own_statements(tmp_path: Path) -> None:
    """Over HTTP: the admin issues November; Alice's token lists and reads only Alice's statements
    (Bob's answers 404, asking for Bob's list 403), in JSON, CSV and HTML; an auditor reads every
    statement but issues none; an open month is 409 `period_not_closed`."""
    config = _node(tmp_path, "sqlite")
    async with running_node(Path(config)) as server, admin_session(server) as admin:
        status, body = await _call(admin, "POST", "/api/v1/statements", {"period": "2026-11"})
        assert status == 200, body
        assert len(body["statements"]) == 3
        current = period_of(int(time.time() * 1000))
        status, body = await _call(admin, "POST", "/api/v1/statements", {"period": current})
        assert (status, body["error"]) == (409, "period_not_closed")
        status, body = await _call(admin, "POST", "/api/v1/statements", {"period": "11-2026"})
        assert status == 400
        status, token = await _call(admin, "POST", "/api/v1/consumers/alice/tokens", {})
        assert status == 201, token
        headers = {"Authorization": f"Bearer {token['token']}"}
        async with aiohttp.ClientSession(server.url, headers=headers) as alice:
            status, body = await _call(alice, "GET", "/api/v1/statements")
            assert status == 200
            assert {s["account"] for s in body["statements"]} == {ALICE}
            assert (await _call(alice, "GET", "/api/v1/statements?consumer=bob"))[0] == 403
            assert (await _call(alice, "GET", "/api/v1/statements?partner=beta"))[0] == 403
            assert (await _call(alice, "GET", "/api/v1/statements/consumer:bob:2"))[0] == 404
            assert (await _call(alice, "POST", "/api/v1/statements", {"period": "2026-11"}))[0] == 403
            status, doc = await _call(alice, "GET", "/api/v1/statements/consumer:alice:2")
            assert status == 200
            assert doc["closing_balance"] == NOVEMBER_CLOSING
            status, sheet = await _call(alice, "GET", "/api/v1/statements/consumer:alice:2?format=csv")
            assert status == 200
            assert "o1:hold:post" in sheet
            status, page = await _call(alice, "GET", "/api/v1/statements/consumer:alice:2?format=html")
            assert status == 200
            assert page.startswith("<!DOCTYPE html>")
        status, user = await _call(admin, "POST", "/api/v1/users", {"name": "ann", "role": "auditor"})
        assert status == 201, user
        async with aiohttp.ClientSession(
            server.url, headers={"Authorization": f"Bearer {user['token']}"}
        ) as ann:
            status, body = await _call(ann, "GET", "/api/v1/statements?period=2026-11")
            assert (status, len(body["statements"])) == (200, 3)
            assert (await _call(ann, "GET", "/api/v1/statements/consumer:bob:2"))[0] == 200
            status, body = await _call(ann, "POST", "/api/v1/statements", {"period": "2026-11"})
            assert status == 403, body
        listed = await cpnode_async("statements", "list", "--period", "2026-11", "--json", config=config)
        assert len(listed.json()) == 3


@pytest.mark.parametrize("form", ["pdf", ""])
async def test_an_unknown_form_is_a_clear_400(tmp_path: Path, form: str) -> None:
    """Asking for a form other than json, csv or html is a 400 naming the field."""
    config = _node(tmp_path, "sqlite")
    async with running_node(Path(config)) as server, admin_session(server) as admin:
        assert (await _call(admin, "POST", "/api/v1/statements", {"period": "2026-11", "consumer": "alice"}))[
            0
        ] == 200
        status, body = await _call(admin, "GET", f"/api/v1/statements/consumer:alice:2?format={form}")
        assert status == 400
        assert "format" in body["message"]


def test_the_last_closed_month_waits_for_the_margin() -> None:
    """The job issues the month before until the margin after a month's end has passed."""
    assert last_closed_month(at(2026, 12, 1, 0)) == "2026-10"
    assert last_closed_month(at(2026, 12, 1, 0) + CLOSE_MARGIN_MS) == "2026-11"
    assert last_closed_month(at(2027, 1, 1, 0)) == "2026-11"
    assert last_closed_month(at(2027, 1, 15)) == "2026-12"


async def test_the_scheduled_job_issues_the_closed_months(tmp_path: Path) -> None:
    """One tick of `statements.issue` on a running node issues every account's statements up to the
    last closed month (here at least November 2026); a second tick issues nothing more."""
    config = _node(tmp_path, "sqlite")
    async with running_node(Path(config)) as server:
        ctx = server.ctx
        assert ctx is not None
        assert await ctx.scheduler.run_job(ISSUE_JOB) == "ok"
        engine = ctx.engine
        november = await asyncio.to_thread(store.list_statements, engine, period="2026-11")
        assert sorted(s.account for s in november) == sorted([ALICE, BOB, "partner:beta"])
        before = await asyncio.to_thread(store.list_statements, engine, limit=10_000)
        assert await ctx.scheduler.run_job(ISSUE_JOB) == "ok"
        assert await asyncio.to_thread(store.list_statements, engine, limit=10_000) == before


def test_issuing_processes_racing_number_without_gaps(tmp_path: Path, db_url: str) -> None:
    """Four `cpnode statements issue` processes started at once on one database: every account ends
    with exactly statements 1 (October) and 2 (November), and each process answers with them."""
    config = _node(tmp_path, db_url)
    command = [sys.executable, "-m", "node", "statements", "issue", "--period", "2026-11", "--json"]
    racers = [
        subprocess.Popen(
            [*command, "--config", config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    answers = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        answers.append(sorted((s["account"], s["number"], s["sha256"]) for s in json.loads(out)))
    assert all(answer == answers[0] for answer in answers)
    listed = cpnode("statements", "list", "--json", "--config", config).json()
    assert sorted((s["account"], s["number"], s["period"]) for s in listed) == sorted(
        (account, number, period)
        for account in (ALICE, BOB, "partner:beta")
        for number, period in ((1, "2026-10"), (2, "2026-11"))
    )


def test_status_counts_the_issued_statements(tmp_path: Path) -> None:
    """`cpnode status` says how many statements are issued and the latest month."""
    config = _node(tmp_path, "sqlite")
    assert "none issued" in cpnode("status", "--config", config).out
    assert cpnode("statements", "issue", "--period", "2026-11", "--config", config).code == 0
    assert "6 issued, latest month 2026-11" in cpnode("status", "--config", config).out
