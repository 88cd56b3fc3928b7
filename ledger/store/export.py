"""Writing an audit bundle from the database (the format is in `ledger.bundle`).

The export first signs a checkpoint at the log's current size, then writes the transfers of the
chosen range with everything an auditor needs to tie them to that checkpoint offline.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from ledger import bundle as fmt
from ledger.checkpoint import verify_checkpoint
from ledger.errors import ConflictError, RequestError
from ledger.merkle import consistency_path, inclusion_path, range_hashes
from ledger.records import Balance
from ledger.store.accounts import list_accounts
from ledger.store.db import now_ms
from ledger.store.log import make_checkpoint, tree_hashes
from ledger.store.reads import balances_at, iter_transfers, open_holds_at, seq_at_time


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What was exported: the directory, the range, and the checkpoint it proves against."""

    directory: Path
    first_seq: int
    end_seq: int
    tree_size: int
    checkpoint_note: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "directory": str(self.directory),
            "first_seq": self.first_seq,
            "end_seq": self.end_seq,
            "tree_size": self.tree_size,
            "checkpoint": self.checkpoint_note,
        }


def _write(path: Path, chunks: Iterable[bytes]) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return {"sha256": digest.hexdigest(), "bytes": size}


def _prepare_dir(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RequestError(f"{out_dir} exists and is not empty; choose a new directory", field="out")
    out_dir.mkdir(parents=True, exist_ok=True)


def export_bundle(
    engine: Engine,
    out_dir: Path,
    key: SigningKey,
    origin: str,
    *,
    since_note: bytes | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    now: int | None = None,
) -> ExportResult:
    """Export transfers since a previous checkpoint and/or within [from_ms, to_ms) as a signed bundle."""
    _prepare_dir(out_dir)
    stored = make_checkpoint(engine, key, origin, now=now, force=True)
    assert stored is not None
    size, root = stored.size, stored.checkpoint.root
    previous = None
    if since_note is not None:
        previous = verify_checkpoint(since_note, key.verify_key, fmt.PREVIOUS_CHECKPOINT)
        if previous.size > size:
            raise ConflictError(f"the previous checkpoint has {previous.size} transfers; this log has {size}")
    with engine.connect() as conn:
        tree = tree_hashes(conn, size)
        if previous is not None and tree(0, previous.size) != previous.root:
            raise ConflictError("the previous checkpoint is not a prefix of this ledger's log")
        first = 0 if previous is None else previous.size
        end = size
        if from_ms is not None:
            first = max(first, min(size, seq_at_time(conn, from_ms)))
        if to_ms is not None:
            end = max(first, min(size, seq_at_time(conn, to_ms)))
        accounts = list_accounts(engine)
        currency = {a.id: a.spec.currency for a in accounts}

        def rows(balances: dict[str, Balance]) -> dict[str, tuple[str, Balance]]:
            return {a.id: (currency[a.id], balances.get(a.id, Balance())) for a in accounts}

        holds = open_holds_at(conn, first)
        consistency = (
            consistency_path(tree, previous.size, size)
            if previous is not None and 0 < previous.size < size
            else []
        )
        proofs = {
            "left": [fmt.b64(h) for h in range_hashes(tree, 0, first)],
            "right": [fmt.b64(h) for h in range_hashes(tree, end, size)],
            "consistency": [fmt.b64(h) for h in consistency],
            "opening_holds": {
                str(h.seq): [fmt.b64(p) for p in inclusion_path(tree, h.seq, size)] for h in holds
            },
        }
        files = {
            fmt.CHECKPOINT: _write(out_dir / fmt.CHECKPOINT, [stored.note.encode("utf-8")]),
            fmt.TRANSFERS: _write(
                out_dir / fmt.TRANSFERS, (fmt.transfer_line(t) for t in iter_transfers(conn, first, end))
            ),
            fmt.OPENING_HOLDS: _write(out_dir / fmt.OPENING_HOLDS, (fmt.transfer_line(h) for h in holds)),
            fmt.ACCOUNTS: _write(
                out_dir / fmt.ACCOUNTS, (fmt.account_line(a.spec, a.closed_seq) for a in accounts)
            ),
            fmt.OPENING_BALANCES: _write(
                out_dir / fmt.OPENING_BALANCES, [fmt.balances_csv(rows(balances_at(conn, first)))]
            ),
            fmt.BALANCES: _write(out_dir / fmt.BALANCES, [fmt.balances_csv(rows(balances_at(conn, end)))]),
            fmt.PROOFS: _write(out_dir / fmt.PROOFS, [fmt.canonical(proofs) + b"\n"]),
        }
    if previous is not None and since_note is not None:
        files[fmt.PREVIOUS_CHECKPOINT] = _write(out_dir / fmt.PREVIOUS_CHECKPOINT, [since_note])
    manifest = {
        "format": fmt.FORMAT,
        "origin": stored.checkpoint.origin,
        "created_ms": now_ms() if now is None else now,
        "range": {"first_seq": first, "end_seq": end},
        "window": None
        if from_ms is None and to_ms is None
        else {"from_ms": from_ms or 0, "to_ms": to_ms or 2**53 - 1},
        "since_size": None if previous is None else previous.size,
        "files": files,
        "root": fmt.b64(root),
    }
    _write(out_dir / fmt.MANIFEST, [fmt.sign_manifest(manifest, key)])
    return ExportResult(out_dir, first, end, size, stored.note)
