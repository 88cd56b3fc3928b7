"""Statements benchmark: issuing a month's statements for 100,000 transfers, against exporting the
same month's transfers as an audit bundle (`ledger.export_bundle`), in the same run.

A SQLite ledger (WAL, synchronous=FULL) holds N transfers stamped in November 2026 (deposits,
charges, holds posted for part of their amount, refunds, partners' credit lines and purchases,
spread over 1,000 consumers and 10 partners) and a few thousand in December, with a checkpoint signed
as the node's job would. Each round, alternating, on a fresh copy of that database:
- baseline: `cpnode ledger export --period 2026-11` (`export_bundle` for the month's window);
- statements: `node.statements.store.issue` for every consumer and partner account (one pass over
  the month, sign, store), then each statement written as JSON, CSV and HTML (`render`).
The ratio is the median statements time over the median export time (target ≤ 2). Every statement
is then checked: its lines add up to its closing balance, and Alice's verifies against the bundle.

Run: .venv/bin/python -m bench statements [--transfers N] [--rounds R]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

import ledger
from bench.report import bench_parser, emit_json
from ledger import TransferKind, TransferRequest
from ledger.statement import period_window
from node.db import make_engine, upgrade
from node.statements import store
from node.statements.render import render
from node.trading import books, rules

ORIGIN = "bench.cpnode/ledger"
PERIOD = "2026-11"
CONSUMERS = 1_000
PARTNERS = 10
CURRENCY = "CNY"


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Issue a month's statements vs export the month's audit bundle.")
    parser.add_argument("--transfers", type=int, default=100_000, help="transfers in the month")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each")
    return parser


def _single(
    tid: str,
    debit: str,
    credit: str,
    amount: int,
    code: int,
    *,
    order_id: str | None = None,
    trade_id: str | None = None,
    partner: str | None = None,
) -> TransferRequest:
    return TransferRequest(
        tid,
        TransferKind.SINGLE,
        debit,
        credit,
        CURRENCY,
        amount,
        code=code,
        order_id=order_id,
        trade_id=trade_id,
        partner=partner,
    )


def _requests(count: int, rng: random.Random, prefix: str) -> list[TransferRequest]:
    """`count` transfers of the kinds a node records (a hold and its post count as two)."""
    pools = [rules.provider_account(f"pool-{i}") for i in range(4)]
    out: list[TransferRequest] = []
    n = 0
    while len(out) < count:
        n += 1
        consumer = rules.consumer_account(f"c{rng.randrange(CONSUMERS)}")
        partner = f"p{rng.randrange(PARTNERS)}"
        roll = rng.random()
        tid = f"{prefix}{n}"
        if roll < 0.25:
            out.append(
                _single(tid, rules.DEPOSITS, consumer, rng.randrange(10_000, 100_000), rules.CODE_DEPOSIT)
            )
        elif roll < 0.55:
            out.append(
                _single(
                    tid, consumer, rng.choice(pools), rng.randrange(1, 500), rules.CODE_SALE, order_id=tid
                )
            )
        elif roll < 0.75 and len(out) + 2 <= count:
            held, hold = rng.randrange(100, 1_000), f"{tid}:hold"
            out.append(
                TransferRequest(
                    hold,
                    TransferKind.PENDING,
                    consumer,
                    rules.ESCROW,
                    CURRENCY,
                    held,
                    code=rules.CODE_ORDER,
                    order_id=tid,
                )
            )
            out.append(
                TransferRequest(
                    f"{hold}:post", TransferKind.POST, amount=rng.randrange(1, held + 1), pending_id=hold
                )
            )
        elif roll < 0.8:
            out.append(_single(tid, rules.FEES, consumer, rng.randrange(1, 50), ledger.CORRECTION_CODE))
        elif roll < 0.85:
            line = rules.credit_line_account(partner)
            out.append(_single(tid, line, rules.partner_account(partner), 1_000_000, rules.CODE_CREDIT_LINE))
        else:
            buyer = rules.partner_account(partner)
            trade = f"{partner}.{tid}"
            out.append(
                _single(
                    tid,
                    buyer,
                    rng.choice(pools),
                    rng.randrange(1, 200),
                    rules.CODE_SALE,
                    trade_id=trade,
                    partner=partner,
                )
            )
    return out


def _fill(engine: Engine, key: SigningKey, transfers: int) -> None:
    start, end = period_window(PERIOD)
    specs = [*books.house_specs(CURRENCY, [f"pool-{i}" for i in range(4)])]
    specs += [books.consumer_spec(f"c{i}", CURRENCY) for i in range(CONSUMERS)]
    for i in range(PARTNERS):
        specs += books.partner_specs(f"p{i}", CURRENCY)
    assert all(r.ok for r in ledger.create_accounts(engine, specs, now=start))
    rng = random.Random(16)
    # Credit lines first, so partners' purchases never meet their limit.
    first = [
        TransferRequest(
            f"line-{i}",
            TransferKind.SINGLE,
            rules.credit_line_account(f"p{i}"),
            rules.partner_account(f"p{i}"),
            CURRENCY,
            10**12,
            code=rules.CODE_CREDIT_LINE,
        )
        for i in range(PARTNERS)
    ]
    deposits = [
        TransferRequest(
            f"seed-{i}",
            TransferKind.SINGLE,
            rules.DEPOSITS,
            rules.consumer_account(f"c{i}"),
            CURRENCY,
            10**9,
            code=rules.CODE_DEPOSIT,
        )
        for i in range(CONSUMERS)
    ]
    november = [*first, *deposits, *_requests(transfers - len(first) - len(deposits), rng, "n")]
    december = _requests(max(1, transfers // 20), rng, "d")
    for requests, (low, high) in ((november, (start, end)), (december, (end, end + 86_400_000))):
        step = (high - low) // (len(requests) + 1)
        for offset in range(0, len(requests), 1_000):
            batch = requests[offset : offset + 1_000]
            results = ledger.submit(engine, batch, now=low + step * (offset + 1))
            assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    ledger.make_checkpoint(engine, key, ORIGIN, force=True)


def _copy(template: Path, target: Path) -> Path:
    target.mkdir()
    shutil.copy(template, target / "node.db")
    return target / "node.db"


def _export(engine: Engine, key: SigningKey, work: Path) -> tuple[float, ledger.ExportResult]:
    """The baseline: the month's audit bundle; (seconds, result)."""
    from_ms, to_ms = period_window(PERIOD)
    begin = time.perf_counter()
    result = ledger.export_bundle(engine, work / "bundle", key, ORIGIN, from_ms=from_ms, to_ms=to_ms)
    return time.perf_counter() - begin, result


def _issue(engine: Engine, key: SigningKey) -> tuple[float, float, list[store.Statement]]:
    """The month's statements: (seconds to issue, seconds to issue and render every form, statements)."""
    to_ms = period_window(PERIOD)[1]
    begin = time.perf_counter()
    store.issue(engine, key, ORIGIN, PERIOD, now_ms=to_ms + 3_600_000)
    issued = time.perf_counter() - begin
    statements = store.list_statements(engine, period=PERIOD, limit=10**6, documents=True)
    for statement in statements:
        for form in ("json", "csv", "html"):
            render(statement.document or b"", form)
    return issued, time.perf_counter() - begin, statements


def _check(statements: list[store.Statement], bundle: Path, key: SigningKey) -> int:
    """Every statement's lines add up to its balances; one consumer's verifies against the bundle."""
    lines = 0
    for statement in statements:
        doc = statement.doc()
        assert statement.closing_balance - statement.opening_balance == sum(
            line["amount"] for line in doc["lines"]
        )
        lines += len(doc["lines"])
    first = next(s for s in statements if s.account == rules.consumer_account("c0"))
    ledger.verify_statement(first.document or b"", bundle, key.verify_key)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures (and one JSON line with --json)."""
    args = build_parser().parse_args(argv)
    key = SigningKey.generate()
    times: dict[str, list[float]] = {"export": [], "issue": [], "issue_and_render": []}
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-statements-") as tmp:
        base = Path(tmp)
        template = base / "template.db"
        started = time.perf_counter()
        engine = make_engine(f"sqlite:///{template}")
        upgrade(engine)
        _fill(engine, key, args.transfers)
        engine.dispose()
        print(
            f"filled {args.transfers:,} transfers in {PERIOD} in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        export: ledger.ExportResult | None = None
        statements: list[store.Statement] = []
        for round_ in range(args.rounds):
            for which in ("export", "statements") if round_ % 2 == 0 else ("statements", "export"):
                work = base / f"{which}-{round_}"
                engine = make_engine(f"sqlite:///{_copy(template, work)}")
                try:
                    if which == "export":
                        elapsed, export = _export(engine, key, work)
                        times["export"].append(elapsed)
                    else:
                        elapsed, with_render, statements = _issue(engine, key)
                        times["issue"].append(elapsed)
                        times["issue_and_render"].append(with_render)
                finally:
                    engine.dispose()
        assert export is not None
        lines = _check(statements, export.directory, key)
    medians = {name: statistics.median(values) for name, values in times.items()}
    month = export.end_seq - export.first_seq
    figures = {
        "transfers_in_period": month,
        "statements": len(statements),
        "statement_lines": lines,
        **{f"{name}_s": round(value, 3) for name, value in medians.items()},
        "ratio_issue": round(medians["issue"] / medians["export"], 3),
        "ratio_issue_and_render": round(medians["issue_and_render"] / medians["export"], 3),
    }
    print(f"transfers in {PERIOD}: {month:,}; {len(statements)} statements, {lines:,} lines")
    print(
        f"export bundle (baseline)        median {medians['export']:.2f} s  {[round(x, 2) for x in times['export']]}"
    )
    print(
        f"issue statements                median {medians['issue']:.2f} s  ratio {figures['ratio_issue']:.2f} "
        "(target <= 2)"
    )
    print(
        f"issue + render JSON, CSV, HTML  median {medians['issue_and_render']:.2f} s  "
        f"ratio {figures['ratio_issue_and_render']:.2f}"
    )
    if args.json:
        emit_json("statements", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
