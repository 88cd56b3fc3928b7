"""Audit bundles: exported from a real database, verified offline with only the node's public key;
any flipped byte is caught and named (the first bad sequence number for transfers)."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy.engine import Engine

from ledger import AuditError, RequestError, export_bundle, submit, verify_bundle, verify_chain
from ledger import bundle as fmt
from ledger.merkle import leaf_hash
from ledger.records import Transfer
from tests.ledger.support import open_accounts, pending, post, single, void

ORIGIN = "node-a.cpnode/ledger"


def _activity(engine: Engine, tag: str, base_ms: int) -> None:
    submit(
        engine,
        [
            single(f"{tag}-fund", "bank", "alice", 1_000, trade_id=f"{tag}-trade"),
            pending(f"{tag}-h1", "alice", "pool", 300, timeout_s=60, trade_id=f"{tag}-trade"),
            pending(f"{tag}-h2", "alice", "pool", 100),
            single(f"{tag}-fee", "alice", "fees", 5, linked=True),
            single(f"{tag}-fee2", "alice", "fees", 1),
        ],
        now=base_ms,
    )
    submit(
        engine,
        [post(f"{tag}-p1", f"{tag}-h1", 250), single(f"{tag}-x", "pool", "bank", 7)],
        now=base_ms + 1_000,
    )


@pytest.fixture(name="books")
def fixture_books(engine: Engine) -> Engine:
    """A ledger with funding, holds (one left open), a post, linked fees and a payout."""
    open_accounts(engine, "bank", "alice", "pool", "fees", no_overdraft=("alice",))
    _activity(engine, "a", 1_000_000)
    return engine


def _public(key: SigningKey) -> VerifyKey:
    return VerifyKey(bytes(key.verify_key))


def test_full_bundle_verifies_with_only_the_public_key(
    books: Engine, key: SigningKey, tmp_path: Path
) -> None:
    """A bundle of the whole log verifies offline: checkpoint, manifest, leaves, root, replayed balances."""
    result = export_bundle(books, tmp_path / "b", key, ORIGIN)
    report = verify_bundle(tmp_path / "b", _public(key))
    assert (report.first_seq, report.end_seq, report.tree_size) == (0, 7, 7)
    assert report.transfers == 7
    assert report.open_holds_at_end == 1
    assert report.origin == ORIGIN
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
        [
            fmt.MANIFEST,
            fmt.CHECKPOINT,
            fmt.TRANSFERS,
            fmt.OPENING_HOLDS,
            fmt.ACCOUNTS,
            fmt.OPENING_BALANCES,
            fmt.BALANCES,
            fmt.PROOFS,
        ]
    )
    assert result.tree_size == 7


def test_transfer_lines_are_the_merkle_leaves(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """Each transfer line is the canonical transfer plus its leaf hash, which hashes exactly that transfer."""
    export_bundle(books, tmp_path / "b", key, ORIGIN)
    lines = (tmp_path / "b" / fmt.TRANSFERS).read_bytes().split(b"\n")[:-1]
    for seq, line in enumerate(lines):
        data = json.loads(line)
        leaf = data.pop("leaf")
        transfer = Transfer.from_dict(data)
        assert transfer.seq == seq
        assert fmt.b64(leaf_hash(transfer.leaf_data())) == leaf


def test_other_key_is_refused(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """A bundle does not verify with another node's key."""
    export_bundle(books, tmp_path / "b", key, ORIGIN)
    with pytest.raises(AuditError, match="checkpoint: not signed by the given key"):
        verify_bundle(tmp_path / "b", SigningKey.generate().verify_key)


def _expected_seq(data: bytes, position: int, first_seq: int) -> int:
    return first_seq + data[:position].count(b"\n")


@pytest.mark.slow  # flips every byte of a bundle
def test_every_flipped_byte_is_caught_and_named(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """Flipping one bit anywhere in any file fails verification, naming the file, and for transfers the
    sequence number of the line that holds the byte."""
    clean = tmp_path / "clean"
    export_bundle(books, clean, key, ORIGIN)
    rnd = random.Random(5)
    work = tmp_path / "work"
    shutil.copytree(clean, work)  # one copy; each flip is undone before the next
    checked = 0
    for path in sorted(clean.iterdir()):
        data = path.read_bytes()
        positions = range(len(data)) if len(data) <= 300 else sorted(rnd.sample(range(len(data)), 120))
        for position in positions:
            changed = bytearray(data)
            changed[position] ^= 1 << rnd.randrange(8)
            (work / path.name).write_bytes(bytes(changed))
            with pytest.raises(AuditError) as failure:
                verify_bundle(work, key.verify_key)
            (work / path.name).write_bytes(data)
            assert failure.value.where == path.name, (path.name, position, str(failure.value))
            if path.name == fmt.TRANSFERS:
                assert failure.value.seq == _expected_seq(data, position, 0), (position, str(failure.value))
            checked += 1
    assert checked > 800


def test_bundle_since_previous_export(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """An export since the previous one carries its checkpoint, a consistency proof, the holds still open
    (with inclusion proofs) and opening balances; it verifies and continues where the last one ended."""
    first = export_bundle(books, tmp_path / "one", key, ORIGIN, now=2_000_000)
    _activity(books, "b", 3_000_000)
    submit(books, [void("a-v2", "a-h2")], now=3_500_000)
    second = export_bundle(
        books, tmp_path / "two", key, ORIGIN, since_note=(tmp_path / "one" / fmt.CHECKPOINT).read_bytes()
    )
    assert second.first_seq == first.end_seq == 7
    report = verify_bundle(tmp_path / "two", key.verify_key)
    assert (report.previous_size, report.opening_holds, report.first_seq) == (7, 1, 7)
    assert report.transfers == second.end_seq - 7
    proofs = json.loads((tmp_path / "two" / fmt.PROOFS).read_text())
    assert proofs["consistency"]
    assert list(proofs["opening_holds"]) == ["2"]


def _chain(books: Engine, key: SigningKey, tmp_path: Path) -> tuple[Path, Path]:
    """Two consecutive bundles: the whole log, then everything since it (a hold from the first still open)."""
    export_bundle(books, tmp_path / "one", key, ORIGIN, now=2_000_000)
    _activity(books, "b", 3_000_000)
    submit(books, [void("a-v2", "a-h2")], now=3_500_000)
    open_accounts(books, "late")
    submit(books, [single("late-fund", "bank", "late", 9)], now=3_600_000)
    since = (tmp_path / "one" / fmt.CHECKPOINT).read_bytes()
    export_bundle(books, tmp_path / "two", key, ORIGIN, since_note=since)
    return tmp_path / "one", tmp_path / "two"


def _forge(bundle: Path, key: SigningKey, name: str, data: bytes) -> None:
    """Rewrite one file and re-sign the manifest with the node's key: a node lying consistently."""
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / fmt.MANIFEST).read_bytes())
    manifest["files"][name] = fmt.file_entry(data)
    (bundle / fmt.MANIFEST).write_bytes(fmt.sign_manifest(manifest, key))


def test_chained_bundles_verify_as_one_history(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """A --since bundle checked against the previous bundle itself: it opens exactly where that one
    closed (an account opened since starts at zero), and the report says the link was checked."""
    one, two = _chain(books, key, tmp_path)
    report = verify_chain(one, two, key.verify_key)
    assert report.chained is True
    assert (report.previous_size, report.first_seq, report.opening_holds) == (7, 7, 1)
    assert verify_bundle(two, key.verify_key).chained is False


def test_chain_catches_opening_balances_the_node_rewrote(
    books: Engine, key: SigningKey, tmp_path: Path
) -> None:
    """A node that shifts an account's opening and closing balances together (and re-signs) passes the
    single-bundle check, since the replay and double entry still add up; the link to the previous
    bundle does not."""
    one, two = _chain(books, key, tmp_path)

    def shifted(name: str) -> bytes:
        rows = fmt.parse_balances_csv((two / name).read_bytes(), name)
        for account_id, field in (("alice", "credits_posted"), ("bank", "debits_posted")):
            currency, balance = rows[account_id]
            setattr(balance, field, getattr(balance, field) + 50)
            rows[account_id] = (currency, balance)
        return fmt.balances_csv(rows)

    _forge(two, key, fmt.OPENING_BALANCES, shifted(fmt.OPENING_BALANCES))
    _forge(two, key, fmt.BALANCES, shifted(fmt.BALANCES))
    verify_bundle(two, key.verify_key)
    with pytest.raises(AuditError, match="opening balance of 'alice' is not the previous bundle's closing"):
        verify_chain(one, two, key.verify_key)


def test_chain_refuses_a_gap_or_the_wrong_previous(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """A bundle that skips transfers after the previous one (--since with a later --from), one exported
    since another checkpoint, and one not exported --since at all are each refused, naming the link."""
    one, two = _chain(books, key, tmp_path)
    since = (one / fmt.CHECKPOINT).read_bytes()
    export_bundle(books, tmp_path / "gap", key, ORIGIN, since_note=since, from_ms=3_500_000)
    with pytest.raises(
        AuditError, match=r"previous-bundle: starts at seq 1\d; the previous bundle ends at 7"
    ):
        verify_chain(one, tmp_path / "gap", key.verify_key)
    submit(books, [single("c-fund", "bank", "alice", 3)], now=4_000_000)
    export_bundle(books, tmp_path / "three", key, ORIGIN, since_note=(two / fmt.CHECKPOINT).read_bytes())
    with pytest.raises(AuditError, match="starts from a checkpoint of"):
        verify_chain(one, tmp_path / "three", key.verify_key)
    verify_chain(two, tmp_path / "three", key.verify_key)
    export_bundle(books, tmp_path / "whole", key, ORIGIN)
    with pytest.raises(AuditError, match="was not exported with --since"):
        verify_chain(one, tmp_path / "whole", key.verify_key)


def test_chain_names_a_broken_previous_bundle(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """A flipped byte in the previous bundle fails the chain and says it was the previous bundle."""
    one, two = _chain(books, key, tmp_path)
    data = bytearray((one / fmt.TRANSFERS).read_bytes())
    data[40] ^= 1
    (one / fmt.TRANSFERS).write_bytes(bytes(data))
    with pytest.raises(AuditError, match=r"^previous bundle transfers\.jsonl seq 0"):
        verify_chain(one, two, key.verify_key)


def test_chain_catches_a_dropped_open_hold(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """Leaving a still-open hold out of the next bundle, its pending amounts removed from both balance
    files and the manifest re-signed, passes on its own but not as the previous bundle's successor."""
    export_bundle(books, tmp_path / "one", key, ORIGIN, now=2_000_000)
    submit(books, [single("b-fund", "bank", "alice", 10)], now=3_000_000)
    two = tmp_path / "two"
    export_bundle(books, two, key, ORIGIN, since_note=(tmp_path / "one" / fmt.CHECKPOINT).read_bytes())
    assert verify_bundle(two, key.verify_key).opening_holds == 1

    def without_pending(name: str) -> bytes:
        rows = fmt.parse_balances_csv((two / name).read_bytes(), name)
        for _currency, balance in rows.values():
            balance.debits_pending = balance.credits_pending = 0
        return fmt.balances_csv(rows)

    _forge(two, key, fmt.OPENING_HOLDS, b"")
    _forge(two, key, fmt.OPENING_BALANCES, without_pending(fmt.OPENING_BALANCES))
    _forge(two, key, fmt.BALANCES, without_pending(fmt.BALANCES))
    proofs = json.loads((two / fmt.PROOFS).read_bytes())
    proofs["opening_holds"] = {}
    _forge(two, key, fmt.PROOFS, fmt.canonical(proofs) + b"\n")
    assert verify_bundle(two, key.verify_key).opening_holds == 0
    with pytest.raises(AuditError, match="previous-bundle: opening balance of 'alice'"):
        verify_chain(tmp_path / "one", two, key.verify_key)


def test_since_a_checkpoint_from_elsewhere_is_refused(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """Exporting since a checkpoint another key signed is refused before anything is written."""
    stranger = tmp_path / "stranger"
    export_bundle(books, stranger, SigningKey.generate(), ORIGIN)
    with pytest.raises(AuditError):
        export_bundle(books, tmp_path / "x", key, ORIGIN, since_note=(stranger / fmt.CHECKPOINT).read_bytes())


def test_time_window_bundle(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """A --from/--to export holds just that window's transfers and still proves them against the checkpoint."""
    _activity(books, "b", 3_000_000)
    result = export_bundle(books, tmp_path / "w", key, ORIGIN, from_ms=1_000_500, to_ms=3_000_000)
    assert (result.first_seq, result.end_seq, result.tree_size) == (5, 7, 14)
    report = verify_bundle(tmp_path / "w", key.verify_key)
    assert report.transfers == 2
    assert report.opening_holds == 2


def test_tree_size_comes_from_the_checkpoint_only(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """Even a manifest signed by the node cannot claim transfers beyond the signed checkpoint's size,
    and an older signed checkpoint does not vouch for a longer log."""
    export_bundle(books, tmp_path / "b", key, ORIGIN)
    manifest = json.loads((tmp_path / "b" / fmt.MANIFEST).read_bytes())
    manifest["range"]["end_seq"] = 8
    (tmp_path / "b" / fmt.MANIFEST).write_bytes(fmt.sign_manifest(manifest, key))
    with pytest.raises(AuditError, match="does not fit the checkpoint"):
        verify_bundle(tmp_path / "b", key.verify_key)
    older = tmp_path / "older"
    export_bundle(books, older, key, ORIGIN)
    _activity(books, "b", 3_000_000)
    export_bundle(books, tmp_path / "newer", key, ORIGIN)
    shutil.copy(older / fmt.CHECKPOINT, tmp_path / "newer" / fmt.CHECKPOINT)
    with pytest.raises(AuditError):
        verify_bundle(tmp_path / "newer", key.verify_key)


def test_rewritten_transfer_with_recomputed_leaf_is_caught(
    books: Engine, key: SigningKey, tmp_path: Path
) -> None:
    """Changing an amount and recomputing the line's leaf hash still fails: the root and digest no longer match."""
    export_bundle(books, tmp_path / "b", key, ORIGIN)
    path = tmp_path / "b" / fmt.TRANSFERS
    lines = path.read_bytes().split(b"\n")
    data = json.loads(lines[3])
    data.pop("leaf")
    data["amount"] += 1
    lines[3] = fmt.transfer_line(Transfer.from_dict(data)).rstrip(b"\n")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(AuditError, match=re.escape(fmt.TRANSFERS)):
        verify_bundle(tmp_path / "b", key.verify_key)


def test_missing_file_is_named(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """A bundle without one of its files fails naming that file."""
    export_bundle(books, tmp_path / "b", key, ORIGIN)
    (tmp_path / "b" / fmt.BALANCES).unlink()
    with pytest.raises(AuditError, match=r"balances\.csv: file is missing"):
        verify_bundle(tmp_path / "b", key.verify_key)


def test_export_refuses_a_used_directory(books: Engine, key: SigningKey, tmp_path: Path) -> None:
    """Exporting into a directory that already holds files is refused."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "other").write_text("x")
    with pytest.raises(RequestError, match="not empty"):
        export_bundle(books, tmp_path / "b", key, ORIGIN)


def test_empty_ledger_exports_and_verifies(engine: Engine, key: SigningKey, tmp_path: Path) -> None:
    """A ledger with no transfers yet exports a bundle of an empty, signed tree that verifies."""
    report = export_bundle(engine, tmp_path / "b", key, ORIGIN)
    assert report.tree_size == 0
    assert verify_bundle(tmp_path / "b", key.verify_key).transfers == 0
