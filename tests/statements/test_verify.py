"""Offline verification of a statement against the month's audit bundle: each kind of tampering,
a wrong key, a tampered bundle and a broken chain fail with a reason naming the line or file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from nacl.signing import SigningKey

import ledger
from ledger.bundle import canonical
from ledger.statement import period_window, sign_statement
from node.db import make_engine, upgrade
from node.statements import store
from tests.statements.support import fill_november

ORIGIN = "alpha.cpnode/ledger"
Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(name="made", scope="module")
def fixture_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningKey, bytes, bytes, Path]:
    """(key, Alice's October and November statements, November's bundle) from a SQLite ledger."""
    base = tmp_path_factory.mktemp("verify")
    key = SigningKey.generate()
    engine = make_engine(f"sqlite:///{base / 'node.db'}")
    upgrade(engine)
    fill_november(engine)
    from_ms, to_ms = period_window("2026-11")
    store.issue(engine, key, ORIGIN, "2026-11", consumer="alice", now_ms=to_ms + 3_600_000)
    october, november = (store.get_statement(engine, f"consumer:alice:{n}").document for n in (1, 2))
    ledger.export_bundle(engine, base / "bundle", key, ORIGIN, from_ms=from_ms, to_ms=to_ms)
    engine.dispose()
    assert october is not None
    assert november is not None
    return key, october, november, base / "bundle"


def _edited(data: bytes, edit: Edit, key: SigningKey | None = None) -> bytes:
    doc = orjson.loads(data)
    edit(doc)
    if key is not None:  # re-signed: only the content checks can catch it
        return sign_statement(doc, key)
    return canonical(doc) + b"\n"


def _fails(
    made: tuple[SigningKey, bytes, bytes, Path], data: bytes, match: str, previous: bytes | None = None
) -> None:
    key, _, _, bundle = made
    with pytest.raises(ledger.AuditError, match=match):
        ledger.verify_statement(data, bundle, key.verify_key, previous)


def test_the_issued_statement_and_its_chain_verify(made: tuple[SigningKey, bytes, bytes, Path]) -> None:
    """November verifies on its own and chained to October."""
    key, october, november, bundle = made
    report = ledger.verify_statement(november, bundle, key.verify_key, october)
    assert (report.number, report.lines, report.chained) == (2, 5, True)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["lines"][2].update(amount=5_000), "statement line 3: amount is 5000"),
        (lambda d: d["lines"][0].update(kind="refund"), "statement line 1: kind is 'refund'"),
        (lambda d: d["lines"][4].update(transfer_id="payout-2"), "statement line 5: transfer_id"),
        (lambda d: d["lines"].pop(1), "statement line 2: transfer_id is 'fix-1'"),
        (lambda d: d["lines"].pop(), "statement line 5: missing"),
        (
            lambda d: d["lines"].append(dict(d["lines"][0], n=6)),
            "statement line 6: transfer 'dep-1' is not a line",
        ),
        (lambda d: d.update(opening_balance=60_000), "opening balance is 60000"),
        (lambda d: d.update(closing_balance=1), "closing_balance is 1"),
        (lambda d: d.update(held_at_close=0), "held_at_close is 0"),
        (lambda d: d.update(period="2026-10"), "not the period 2026-10"),
        (lambda d: d.update(account="consumer:bob"), "opening balance is 50000; the bundle's is 0"),
    ],
)
def test_an_edited_statement_fails_naming_what_differs(
    made: tuple[SigningKey, bytes, bytes, Path], edit: Edit, match: str
) -> None:
    """Edits caught by recomputing from the bundle, even when the statement is signed again by the key."""
    key, _, november, _ = made
    _fails(made, _edited(november, edit, key), match)
    _fails(made, _edited(november, edit), match)


def test_the_signature_and_numbering_are_checked(made: tuple[SigningKey, bytes, bytes, Path]) -> None:
    """Content untouched but issued_ms or number changed: the signature fails; a wrong key fails; a
    renumbered statement re-signed no longer follows its predecessor."""
    key, october, november, bundle = made
    _fails(made, _edited(november, lambda d: d.update(issued_ms=1)), "signature does not verify")
    with pytest.raises(ledger.AuditError, match="bundle checkpoint"):
        ledger.verify_statement(november, bundle, SigningKey.generate().verify_key)
    renumbered = _edited(november, lambda d: d.update(number=3), key)
    _fails(made, renumbered, "number 1; this one is 3, which does not follow it without a gap", october)
    _fails(
        made,
        _edited(november, lambda d: d.update(previous_sha256=None), key),
        "does not name its predecessor",
    )
    _fails(made, november, "previous statement: is number 2; this one is 2", november)


def test_a_tampered_bundle_fails_naming_its_file(
    made: tuple[SigningKey, bytes, bytes, Path], tmp_path: Path
) -> None:
    """A bundle whose transfers were edited fails as a bundle, naming the file and the seq."""
    key, _, november, bundle = made
    copy = tmp_path / "bundle"
    copy.mkdir()
    for path in bundle.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    transfers = copy / "transfers.jsonl"
    transfers.write_bytes(transfers.read_bytes().replace(b'"amount":12345', b'"amount":12000'))
    with pytest.raises(ledger.AuditError, match=r"bundle transfers\.jsonl seq"):
        ledger.verify_statement(november, copy, key.verify_key)
