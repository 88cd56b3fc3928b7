"""The audit bundle's format: file names, line and CSV forms, and the signed manifest.

A bundle is a directory:

    manifest.json          signed by the node key: format, origin, range, window, per-file SHA-256
    checkpoint             the signed checkpoint (C2SP note) the bundle proves against
    previous-checkpoint    with `--since`: the checkpoint the previous export ended at
    transfers.jsonl        transfers first_seq ≤ seq < end_seq, one canonical JSON line each, with
                           its Merkle leaf hash in "leaf" (so a changed line names its seq)
    opening-holds.jsonl    holds still open at first_seq (same line form)
    accounts.jsonl         every account: id, currency, kind, limits, partner, closed_seq
    opening-balances.csv   balances before first_seq;  balances.csv: balances before end_seq
    proofs.json            compact ranges [0, first_seq) and [end_seq, size), the consistency proof
                           from the previous checkpoint, an inclusion proof per opening hold

Every file is in one canonical byte form (sorted keys, no spaces, `\\n` line ends, standard base64),
so any flipped byte changes what the verifier reads or recomputes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ledger.checkpoint import strict_b64decode
from ledger.errors import AuditError
from ledger.merkle import leaf_hash
from ledger.records import AccountSpec, Balance, Transfer

FORMAT = "cpnode-ledger-audit/1"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint"
PREVIOUS_CHECKPOINT = "previous-checkpoint"
TRANSFERS = "transfers.jsonl"
OPENING_HOLDS = "opening-holds.jsonl"
ACCOUNTS = "accounts.jsonl"
OPENING_BALANCES = "opening-balances.csv"
BALANCES = "balances.csv"
PROOFS = "proofs.json"
BALANCE_HEADER = "account,currency,debits_pending,debits_posted,credits_pending,credits_posted"


def b64(data: bytes) -> str:
    """Standard base64 with padding (the form used throughout a bundle)."""
    return base64.b64encode(data).decode("ascii")


def canonical(value: Any) -> bytes:
    """Sorted-key, whitespace-free JSON bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def transfer_line(transfer: Transfer) -> bytes:
    """A transfer's bundle line: its fields plus its leaf hash, canonical, newline-terminated."""
    data = transfer.to_dict()
    data["leaf"] = b64(leaf_hash(transfer.leaf_data()))
    return canonical(data) + b"\n"


def parse_transfer_line(line: bytes, where: str, seq: int) -> tuple[Transfer, bytes]:
    """Parse and check one transfer line: the transfer and its (recomputed and matching) leaf hash."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise AuditError(where, "line is not valid JSON", seq) from None
    if not isinstance(data, dict) or not isinstance(data.get("leaf"), str):
        raise AuditError(where, "line is not a transfer with a leaf hash", seq)
    stated = data.pop("leaf")
    try:
        transfer = Transfer.from_dict(data)
    except ValueError as exc:
        raise AuditError(where, f"not a transfer: {exc}", seq) from None
    computed = leaf_hash(transfer.leaf_data())
    if b64(computed) != stated:
        raise AuditError(where, "content does not match its leaf hash", seq)
    if transfer_line(transfer) != line + b"\n":
        raise AuditError(where, "line is not in canonical form", seq)
    return transfer, computed


def account_line(spec: AccountSpec, closed_seq: int | None) -> bytes:
    """An account's bundle line."""
    data = asdict(spec)
    data["kind"] = str(spec.kind)
    data["closed_seq"] = closed_seq
    return canonical(data) + b"\n"


def balances_csv(rows: Mapping[str, tuple[str, Balance]]) -> bytes:
    """CSV of balances by account id: (currency, balance) per account, sorted by id."""
    lines = [BALANCE_HEADER]
    for account_id in sorted(rows):
        currency, b = rows[account_id]
        lines.append(
            f"{account_id},{currency},{b.debits_pending},{b.debits_posted},{b.credits_pending},{b.credits_posted}"
        )
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_balances_csv(data: bytes, where: str) -> dict[str, tuple[str, Balance]]:
    """Parse a balances CSV written by `balances_csv`, strictly."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise AuditError(where, "not ASCII") from None
    lines = text.split("\n")
    if lines[0] != BALANCE_HEADER or lines[-1] != "":
        raise AuditError(where, "header or final newline missing")
    rows: dict[str, tuple[str, Balance]] = {}
    for number, line in enumerate(lines[1:-1], start=2):
        cells = line.split(",")
        if len(cells) != 6 or cells[0] in rows:
            raise AuditError(where, f"line {number} is malformed or repeats an account")
        try:
            values = [int(cell) for cell in cells[2:]]
        except ValueError:
            raise AuditError(where, f"line {number} has a non-integer amount") from None
        if any(str(v) != cell for v, cell in zip(values, cells[2:], strict=True)):
            raise AuditError(where, f"line {number} is not in canonical form")
        rows[cells[0]] = (cells[1], Balance(*values))
    if balances_csv(rows) != data:
        raise AuditError(where, "not in canonical form (order or spacing)")
    return rows


def file_entry(data: bytes) -> dict[str, Any]:
    """The manifest entry of one file."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def sign_manifest(manifest: Mapping[str, Any], key: SigningKey) -> bytes:
    """The manifest file: canonical JSON with an Ed25519 signature over everything else."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    signature = key.sign(canonical(body)).signature
    return canonical({**body, "signature": b64(signature)}) + b"\n"


def open_manifest(data: bytes, key: VerifyKey) -> dict[str, Any]:
    """Parse the manifest file and check its signature by `key`, or raise AuditError."""
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise AuditError(MANIFEST, "not valid JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("signature"), str):
        raise AuditError(MANIFEST, "no signature")
    if canonical(manifest) + b"\n" != data:
        raise AuditError(MANIFEST, "not in canonical form")
    body = {k: v for k, v in manifest.items() if k != "signature"}
    try:
        signature = strict_b64decode(manifest["signature"], "signature")
        key.verify(canonical(body), signature)
    except (ValueError, BadSignatureError):
        raise AuditError(MANIFEST, "signature does not verify with the given key") from None
    if body.get("format") != FORMAT:
        raise AuditError(MANIFEST, f"format is {body.get('format')!r}, expected {FORMAT!r}")
    return body
