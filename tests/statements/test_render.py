"""CSV and HTML forms of a statement: exact money in major units, every line, nothing external."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from ledger import AccountKind, AccountSpec
from ledger.statement import Line, statement_body
from node.statements.render import file_name, render, to_csv, to_html

SPEC = AccountSpec("consumer:alice", "JPY", AccountKind.CONSUMER)
LINES = [
    Line(
        1,
        7,
        "dep-1",
        1_793_620_800_000,
        "deposit",
        1_234_567,
        1_234_567,
        "external:deposits",
        100,
        None,
        None,
    ),
    Line(
        2, 9, "o1:hold:post", 1_793_707_200_000, "charge", -5, 1_234_562, "provider:pool-a", 300, "o1", None
    ),
]


def _doc() -> dict[str, Any]:
    return statement_body(
        origin="alpha.cpnode/ledger",
        spec=SPEC,
        period="2026-11",
        first_seq=7,
        end_seq=10,
        number=2,
        previous_sha256="ab" * 32,
        opening=0,
        lines=LINES,
        issued_ms=1_796_083_300_000,
    )


def test_csv_has_every_line_with_exact_amounts() -> None:
    """The CSV reads back: opening, each line with its transfer id, closing; JPY has no decimals."""
    rows = list(csv.reader(io.StringIO(to_csv(_doc()).decode())))
    assert rows[1][:5] == ["n", "seq", "time_utc", "transfer_id", "kind"]
    assert rows[2][4:] == ["opening", "", "", "", "", "0"]
    assert rows[3][3:] == ["dep-1", "deposit", "external:deposits", "", "", "1234567", "1234567"]
    assert rows[4][2] == "2026-11-03T12:00:00.000Z"
    assert rows[4][3:] == ["o1:hold:post", "charge", "provider:pool-a", "o1", "", "-5", "1234562"]
    assert rows[5][4:] == ["closing", "", "", "", "", "1234562"]


def test_html_is_one_printable_page_without_external_assets() -> None:
    """The page shows the money formatted, each transfer, and fetches nothing."""
    page = to_html(_doc()).decode()
    assert page.startswith("<!DOCTYPE html>")
    assert "1,234,562 JPY" in page
    assert "o1:hold:post" in page
    assert "@media print" in page
    for external in ("<script", "<link", "src=", "href=", "url("):
        assert external not in page


def test_forms_and_file_names() -> None:
    """json is the stored bytes unchanged; an unknown form is refused; file names have no colon."""
    document = b'{"format":"cpnode-statement/1"}'
    assert render(document, "json") is document
    with pytest.raises(ValueError, match="no statement form 'pdf'"):
        render(document, "pdf")
    assert file_name("consumer:alice:2", "csv") == "consumer-alice-2.csv"


@pytest.mark.parametrize("millis", [0, 1, 123, 999])
def test_times_keep_their_milliseconds_exactly(millis: int) -> None:
    """A line's time is shown to the millisecond it was stamped with, never one less."""
    doc = _doc()
    doc["lines"][0]["ts_ms"] = 1_793_707_200_000 + millis
    rows = list(csv.reader(io.StringIO(to_csv(doc).decode())))
    assert rows[3][2] == f"2026-11-03T12:00:00.{millis:03d}Z"
