"""Statements of real trading between two running nodes: alice of `a` runs a task on `b`'s pool;
once the month is over, alice's statement at `a` and `a`'s partner statement at `b` each show what
the task cost as a charge with its order or trade, close at the ledger's balance, and verify line by
line against an audit bundle of the month exported from the same node."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ledger
from ledger.statement import CLOSE_MARGIN_MS, period_of, period_window
from node.statements import store
from tests.support.polling import eventually
from tests.support.tasks import DEPOSIT, Node, pair, python_task


async def month_statement(node: Node, out: Path, period: str, **who: str) -> dict[str, Any]:
    """Issue `period` for the named account at `node` as if the month were over, export the
    month's bundle to `out`, and verify the statement against it; the signed document."""
    ctx = node.server.ctx
    assert ctx is not None
    key, origin = ctx.identity.signing_key, ledger.origin_for(ctx.name)
    from_ms, to_ms = period_window(period)
    [(statement, created)] = await asyncio.to_thread(
        store.issue, ctx.engine, key, origin, period, now_ms=to_ms + CLOSE_MARGIN_MS + 1, **who
    )
    assert created
    await asyncio.to_thread(ledger.export_bundle, ctx.engine, out, key, origin, from_ms=from_ms, to_ms=to_ms)
    stored = await asyncio.to_thread(store.get_statement, ctx.engine, statement.id)
    assert stored.document is not None
    report = ledger.verify_statement(stored.document, out, key.verify_key)
    assert (report.account, report.closing_balance) == (statement.account, statement.closing_balance)
    return stored.doc()


async def test_statements_of_a_real_trade_verify_against_each_nodes_bundle(tmp_path: Path) -> None:
    """See the module docstring."""
    async with pair(tmp_path) as p:
        a, b = p.buyer, p.seller
        task = await a.submit(python_task("print('billed')"))
        done = await a.wait(task["id"], timeout_s=60)
        assert (done["kind"], done["outcome"]) == ("remote", "succeeded"), done
        trade = done["order_id"]

        async def sold_settled() -> bool:
            _, sales = await b.call("GET", "/api/v1/sales?partner=a")
            return [(sale["trade_id"], sale["state"]) for sale in sales["sales"]] == [(trade, "settled")]

        await eventually(sold_settled, 60, what="b's sale settled")
        _, sales = await b.call("GET", "/api/v1/sales?partner=a")
        sold = sales["sales"][0]["settled_amount"]
        period = period_of(done["created_ms"])

        alice = await month_statement(a, tmp_path / "a-bundle", period, consumer="alice")
        kinds = [(line["kind"], line["amount"]) for line in alice["lines"]]
        assert kinds[0] == ("deposit", DEPOSIT), kinds
        [charge] = [line for line in alice["lines"] if line["kind"] == "charge"]
        assert charge["order_id"] == trade
        assert charge["amount"] == -done["amount"] < 0, (charge, done)
        balance = await a.consumer("alice")
        assert alice["closing_balance"] == balance["balance"] == DEPOSIT - done["amount"]

        partner = await month_statement(b, tmp_path / "b-bundle", period, partner="a")
        [billed] = [line for line in partner["lines"] if line["kind"] == "charge"]
        assert (billed["trade_id"], billed["amount"]) == (trade, -sold), partner["lines"]
        assert partner["holder"] == {"kind": "partner", "name": "a"}
