"""A statement document as CSV and as a printable HTML page (no external assets), amounts shown
with node.money. Pure: bytes in, bytes out."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping
from typing import Any

import orjson

from node.money import format_money, major_text
from node.times import format_ms

CSV_COLUMNS = (
    "n",
    "seq",
    "time_utc",
    "transfer_id",
    "kind",
    "counterparty",
    "order_id",
    "trade_id",
    "amount",
    "balance",
)


def _time(ts_ms: int) -> str:
    """ISO 8601 UTC with milliseconds (node.times, in integer arithmetic)."""
    return format_ms(ts_ms, millis=True)


def _decimal(minor: int, currency: str) -> str:
    """Major units without thousands separators, for spreadsheets: 137155 CNY → 1371.55."""
    return major_text(minor, currency).replace(",", "")


def _title(doc: Mapping[str, Any]) -> str:
    holder = doc["holder"]
    return f"Statement {doc['number']} of {holder['kind']} {holder['name']}, {doc['period']}"


def to_csv(doc: Mapping[str, Any]) -> bytes:
    """The statement as CSV: a title row, the header, an opening row, one row per line (amounts in
    major units, no thousands separators), a closing row."""
    currency = doc["currency"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "# " + _title(doc),
            f"account {doc['account']}",
            f"currency {currency}",
            f"origin {doc['origin']}",
            f"held at close {_decimal(doc['held_at_close'], currency)}",
        ]
    )
    writer.writerow(CSV_COLUMNS)
    writer.writerow(
        [
            "",
            "",
            _time(doc["from_ms"]),
            "",
            "opening",
            "",
            "",
            "",
            "",
            _decimal(doc["opening_balance"], currency),
        ]
    )
    for line in doc["lines"]:
        writer.writerow(
            [
                line["n"],
                line["seq"],
                _time(line["ts_ms"]),
                line["transfer_id"],
                line["kind"],
                line["counterparty"],
                line["order_id"] or "",
                line["trade_id"] or "",
                _decimal(line["amount"], currency),
                _decimal(line["balance"], currency),
            ]
        )
    writer.writerow(
        [
            "",
            "",
            _time(doc["to_ms"]),
            "",
            "closing",
            "",
            "",
            "",
            "",
            _decimal(doc["closing_balance"], currency),
        ]
    )
    return out.getvalue().encode("utf-8")


_STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 18px; margin: 0 0 .3em; } p.meta { color: #444; margin: 0 0 1em; }
table { border-collapse: collapse; width: 100%; } th, td { padding: 3px 6px; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.edge td { font-weight: 600; } code { font-size: 12px; }
@media print { body { margin: 0; } th { background: none; } }
"""


def to_html(doc: Mapping[str, Any]) -> bytes:
    """The statement as one self-contained HTML page, fit to print (inline style, no scripts or links)."""
    currency = doc["currency"]
    e = html.escape

    def money(minor: int) -> str:
        return e(format_money(minor, currency))

    rows = [
        f'<tr class="edge"><td></td><td>{e(_time(doc["from_ms"]))}</td><td>opening balance</td>'
        f'<td></td><td></td><td class="num"></td><td class="num">{money(doc["opening_balance"])}</td></tr>'
    ]
    for line in doc["lines"]:
        reference = line["trade_id"] or line["order_id"] or ""
        rows.append(
            f"<tr><td>{line['n']}</td><td>{e(_time(line['ts_ms']))}</td><td>{e(line['kind'])}</td>"
            f"<td><code>{e(line['transfer_id'])}</code> (seq {line['seq']})</td><td>{e(reference)}</td>"
            f'<td class="num">{money(line["amount"])}</td><td class="num">{money(line["balance"])}</td></tr>'
        )
    rows.append(
        f'<tr class="edge"><td></td><td>{e(_time(doc["to_ms"]))}</td><td>closing balance</td>'
        f'<td></td><td></td><td class="num"></td><td class="num">{money(doc["closing_balance"])}</td></tr>'
    )
    totals = ", ".join(
        f"{e(kind)} {money(amount)}" for kind, amount in sorted(doc["totals"].items()) if amount
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(_title(doc))}</title><style>{_STYLE}</style></head>
<body>
<h1>{e(_title(doc))}</h1>
<p class="meta">Account <code>{e(doc["account"])}</code> at {e(doc["origin"])}; {e(_time(doc["from_ms"]))} to
{e(_time(doc["to_ms"]))} (transfers seq {doc["range"]["first_seq"]} to {doc["range"]["end_seq"]}, end excluded).
Totals: {totals or "no movements"}. Held by open orders at the end: {money(doc["held_at_close"])}. Issued {e(_time(doc["issued_ms"]))}; signed by the node
(verify with <code>cpnode statements verify</code> against the period's audit bundle).</p>
<table>
<thead><tr><th>#</th><th>time (UTC)</th><th>kind</th><th>transfer</th><th>order / trade</th>
<th class="num">amount</th><th class="num">balance</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body></html>
"""
    return page.encode("utf-8")


def line_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """The lines as table rows for the CLI: number, time, kind, transfer, amount, balance."""
    currency = doc["currency"]
    return [
        [
            str(line["n"]),
            _time(line["ts_ms"]),
            line["kind"],
            f"{line['transfer_id']} (seq {line['seq']})",
            format_money(line["amount"], currency),
            format_money(line["balance"], currency),
        ]
        for line in doc["lines"]
    ]


def render(document: bytes, form: str) -> bytes:
    """A stored statement in one of its forms: `json` (the signed document itself), `csv` or `html`."""
    if form == "json":
        return document
    doc = orjson.loads(document)
    if form == "csv":
        return to_csv(doc)
    if form == "html":
        return to_html(doc)
    raise ValueError(f"no statement form {form!r} (json, csv or html)")


def file_name(statement_id: str, form: str) -> str:
    """The file a statement is exported to: its id with `:` as `-`, and the form's extension."""
    return f"{statement_id.replace(':', '-')}.{form}"
