"""Offline verification of an audit bundle with nothing but the node's public key.

Order of checks (the first failure is reported, naming the file and, for transfers, the seq):
1. `checkpoint` is a signed note by the key; the tree size comes from it and nowhere else.
2. `manifest.json` is signed by the key; every listed file but the transfers matches its SHA-256.
3. Opening state: balances, open holds (each with an inclusion proof against the checkpoint), and
   for `--since` bundles the previous checkpoint and its consistency proof to this one.
4. `transfers.jsonl`, line by line: canonical form, its leaf hash, dense seq, monotonic time, and a
   replay applying the ledger's rules (accounts exist and are open, currency, holds resolve once and
   in time, limits counting pending amounts, no overflow, never negative).
5. The Merkle root rebuilt from the compact ranges and the leaves equals the checkpoint's root;
   replayed balances equal `balances.csv`; per currency debits equal credits; pending balances
   equal the holds still open.

`verify_chain` checks a `--since` bundle against the previous bundle itself (verified first): the
previous checkpoint is the one that bundle ended at, the ranges meet with no gap, and the opening
balances, open holds and accounts are exactly what the previous bundle closed with. Without it the
opening state of a `--since` bundle rests on the node's signature alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from nacl.signing import VerifyKey

from ledger import bundle as fmt
from ledger.balances import apply_transfer, currency_totals, double_entry_problems, limit_violation, overflows
from ledger.bundle_files import SMALL_FILE_BYTES, file_entries, read_file
from ledger.checkpoint import Checkpoint, strict_b64decode, verify_checkpoint
from ledger.errors import AuditError, ProofError
from ledger.holds import expiry_id, is_past_deadline
from ledger.merkle import root_from_range, verify_consistency, verify_inclusion
from ledger.records import AccountKind, AccountSpec, Balance, Transfer, TransferKind
from ledger.validation import check_account


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a verified bundle proves."""

    origin: str
    tree_size: int
    root: str
    checkpoint_time_ms: int
    first_seq: int
    end_seq: int
    transfers: int
    accounts: int
    opening_holds: int
    open_holds_at_end: int
    previous_size: int | None
    chained: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def _hashes(value: Any, where: str, what: str) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise AuditError(where, f"{what} must be a list of base64 hashes")
    try:
        return [strict_b64decode(h, what) for h in value]
    except ValueError as exc:
        raise AuditError(where, str(exc)) from None


def _int(value: Any, where: str, what: str, optional: bool = False) -> int:
    if value is None and optional:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AuditError(where, f"{what} must be a non-negative integer")
    return value


class _Verifier:
    def __init__(self, directory: Path, key: VerifyKey) -> None:
        self.dir = directory
        self.key = key
        self.specs: dict[str, AccountSpec] = {}
        self.closed: dict[str, int | None] = {}
        self.balances: dict[str, Balance] = {}
        self.holds: dict[str, Transfer] = {}
        self.opening: dict[str, Balance] = {}
        self.opening_hold_ids: frozenset[str] = frozenset()
        self.last_ts = 0
        self.raw: dict[str, bytes] = {}

    def read(self, name: str, max_bytes: int) -> bytes:
        data = read_file(self.dir, name, max_bytes)
        self.raw[name] = data
        return data

    def check_digest(self, name: str, data: bytes, files: Mapping[str, Any]) -> None:
        if fmt.file_entry(data) != files.get(name):
            raise AuditError(name, "contents do not match the SHA-256 in the signed manifest")

    def accounts(self, data: bytes) -> None:
        for number, line in enumerate(data.split(b"\n")[:-1], start=1):
            try:
                raw = orjson.loads(line)
                closed_seq = raw.pop("closed_seq")
                spec = AccountSpec(**{**raw, "kind": AccountKind(raw["kind"])})
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                raise AuditError(fmt.ACCOUNTS, f"line {number} is not an account") from None
            problem = check_account(spec)
            if problem or fmt.account_line(spec, closed_seq) != line + b"\n" or spec.id in self.specs:
                raise AuditError(fmt.ACCOUNTS, f"line {number} is malformed or repeated")
            self.specs[spec.id] = spec
            self.closed[spec.id] = (
                None if closed_seq is None else _int(closed_seq, fmt.ACCOUNTS, "closed_seq")
            )

    def balances_file(self, name: str, data: bytes) -> dict[str, Balance]:
        rows = fmt.parse_balances_csv(data, name)
        if set(rows) != set(self.specs):
            raise AuditError(name, "does not list exactly the accounts of accounts.jsonl")
        for account_id, (currency, _) in rows.items():
            if currency != self.specs[account_id].currency:
                raise AuditError(name, f"account {account_id} has the wrong currency")
        return {account_id: balance for account_id, (_, balance) in rows.items()}

    def step(self, t: Transfer, where: str) -> None:
        """Replay one transfer with the ledger's rules."""
        seq = t.seq
        if t.ts_ms < self.last_ts:
            raise AuditError(where, "time goes backwards", seq)
        self.last_ts = t.ts_ms
        for side, account_id in (("debit", t.debit_account), ("credit", t.credit_account)):
            spec = self.specs.get(account_id)
            if spec is None:
                raise AuditError(where, f"{side} account {account_id!r} is not in accounts.jsonl", seq)
            if spec.currency != t.currency:
                raise AuditError(where, f"{side} account {account_id!r} is not in {t.currency}", seq)
            closed = self.closed[account_id]
            if closed is not None and seq >= closed:
                raise AuditError(where, f"{side} account {account_id!r} was closed before this transfer", seq)
        if t.debit_account == t.credit_account:
            raise AuditError(where, "debit and credit account are the same", seq)
        if t.kind in (TransferKind.SINGLE, TransferKind.PENDING):
            self.two_sided(t, where)
        else:
            self.resolution(t, where)
        debit, credit = self.balances[t.debit_account], self.balances[t.credit_account]
        apply_transfer(debit, credit, t)
        for account_id, balance in ((t.debit_account, debit), (t.credit_account, credit)):
            if overflows(balance) or min(balance.as_tuple()) < 0:
                raise AuditError(where, f"account {account_id!r} leaves the valid range", seq)
            problem = limit_violation(self.specs[account_id], balance)
            if problem is not None:
                raise AuditError(where, f"account {account_id!r} breaks its limit ({problem})", seq)

    def two_sided(self, t: Transfer, where: str) -> None:
        expected_expiry = None if t.timeout_s is None else t.ts_ms + t.timeout_s * 1000
        if t.amount < 1 or t.pending_id is not None or t.pending_amount is not None:
            raise AuditError(where, f"malformed {t.kind} transfer", t.seq)
        if t.expires_ms != expected_expiry or (t.kind is TransferKind.SINGLE and t.timeout_s is not None):
            raise AuditError(where, "deadline does not follow from the timeout", t.seq)
        if t.kind is TransferKind.PENDING:
            self.holds[t.id] = t

    def resolution(self, t: Transfer, where: str) -> None:
        hold = self.holds.pop(t.pending_id or "", None)
        if hold is None:
            raise AuditError(where, f"resolves {t.pending_id!r}, which is not an open hold", t.seq)
        same = (t.debit_account, t.credit_account, t.currency) == (
            hold.debit_account,
            hold.credit_account,
            hold.currency,
        )
        if not same or t.pending_amount != hold.amount or t.timeout_s is not None or t.expires_ms is not None:
            raise AuditError(where, "does not match the hold it resolves", t.seq)
        if t.kind is TransferKind.POST and not 1 <= t.amount <= hold.amount:
            raise AuditError(where, "posts more than the hold or nothing", t.seq)
        if t.kind is not TransferKind.POST and t.amount != 0:
            raise AuditError(where, f"a {t.kind} posts nothing", t.seq)
        past = is_past_deadline(hold, t.ts_ms)
        if t.kind is TransferKind.EXPIRE and (not past or t.id != expiry_id(hold.id)):
            raise AuditError(where, "expires a hold before its deadline or under the wrong id", t.seq)
        if t.kind is not TransferKind.EXPIRE and past:
            raise AuditError(where, "resolves a hold after its deadline", t.seq)

    def pending_matches_holds(self, where: str) -> None:
        expected: dict[str, list[int]] = {account_id: [0, 0] for account_id in self.specs}
        for hold in self.holds.values():
            expected[hold.debit_account][0] += hold.amount
            expected[hold.credit_account][1] += hold.amount
        for account_id, (debits, credits) in expected.items():
            b = self.balances[account_id]
            if (b.debits_pending, b.credits_pending) != (debits, credits):
                raise AuditError(where, f"pending amounts of {account_id!r} do not match its open holds")

    def double_entry(self, where: str) -> None:
        problems = double_entry_problems(
            currency_totals(self.balances, {k: s.currency for k, s in self.specs.items()})
        )
        if problems:
            raise AuditError(where, "; ".join(problems))

    def run(self) -> VerifyReport:
        checkpoint = verify_checkpoint(self.read(fmt.CHECKPOINT, SMALL_FILE_BYTES), self.key, fmt.CHECKPOINT)
        manifest = fmt.open_manifest(self.read(fmt.MANIFEST, SMALL_FILE_BYTES), self.key)
        files = file_entries(manifest.get("files"))
        if manifest.get("origin") != checkpoint.origin:
            raise AuditError(fmt.MANIFEST, "origin differs from the checkpoint's")
        span = manifest.get("range")
        if not isinstance(span, dict):
            raise AuditError(fmt.MANIFEST, "range is missing")
        first = _int(span.get("first_seq"), fmt.MANIFEST, "first_seq")
        end = _int(span.get("end_seq"), fmt.MANIFEST, "end_seq")
        if not first <= end <= checkpoint.size:
            raise AuditError(
                fmt.MANIFEST, f"range [{first}, {end}) does not fit the checkpoint's {checkpoint.size}"
            )
        data = {
            name: self.read(name, entry["bytes"]) for name, entry in files.items() if name != fmt.TRANSFERS
        }
        for name, content in data.items():
            self.check_digest(name, content, files)
        self.accounts(data[fmt.ACCOUNTS])
        self.balances = self.balances_file(fmt.OPENING_BALANCES, data[fmt.OPENING_BALANCES])
        self.opening = {account_id: replace(b) for account_id, b in self.balances.items()}
        proofs = self.proofs(data[fmt.PROOFS])
        self.opening_holds(data[fmt.OPENING_HOLDS], proofs, checkpoint, first)
        if first == 0 and (any(any(b.as_tuple()) for b in self.balances.values()) or self.holds):
            raise AuditError(fmt.OPENING_BALANCES, "a bundle from the start must open with empty accounts")
        self.double_entry(fmt.OPENING_BALANCES)
        self.pending_matches_holds(fmt.OPENING_HOLDS)
        opening_holds = len(self.holds)
        self.opening_hold_ids = frozenset(self.holds)
        previous_size = self.previous(manifest, data, proofs, checkpoint)
        leaves = self.transfers(manifest, files, first, end)
        try:
            root = root_from_range(checkpoint.size, first, end, proofs["left"], leaves, proofs["right"])
        except ProofError as exc:
            raise AuditError(fmt.PROOFS, str(exc)) from None
        if root != checkpoint.root:
            raise AuditError(
                fmt.TRANSFERS, "the Merkle root rebuilt from the transfers is not the checkpoint's"
            )
        stated = self.balances_file(fmt.BALANCES, data[fmt.BALANCES])
        for account_id in sorted(stated):
            if stated[account_id] != self.balances[account_id]:
                raise AuditError(
                    fmt.BALANCES, f"account {account_id!r} differs from the replay of the transfers"
                )
        self.double_entry(fmt.BALANCES)
        self.pending_matches_holds(fmt.BALANCES)
        return VerifyReport(
            origin=checkpoint.origin,
            tree_size=checkpoint.size,
            root=fmt.b64(checkpoint.root),
            checkpoint_time_ms=checkpoint.time_ms,
            first_seq=first,
            end_seq=end,
            transfers=len(leaves),
            accounts=len(self.specs),
            opening_holds=opening_holds,
            open_holds_at_end=len(self.holds),
            previous_size=previous_size,
        )

    def proofs(self, data: bytes) -> dict[str, Any]:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise AuditError(fmt.PROOFS, "not valid JSON") from None
        if not isinstance(raw, dict) or fmt.canonical(raw) + b"\n" != data:
            raise AuditError(fmt.PROOFS, "not a canonical JSON object")
        holds = raw.get("opening_holds")
        if not isinstance(holds, dict):
            raise AuditError(fmt.PROOFS, "opening_holds must be an object")
        return {
            "left": _hashes(raw.get("left"), fmt.PROOFS, "left"),
            "right": _hashes(raw.get("right"), fmt.PROOFS, "right"),
            "consistency": _hashes(raw.get("consistency"), fmt.PROOFS, "consistency"),
            "opening_holds": {
                seq: _hashes(p, fmt.PROOFS, f"proof of hold {seq}") for seq, p in holds.items()
            },
        }

    def opening_holds(self, data: bytes, proofs: dict[str, Any], checkpoint: Checkpoint, first: int) -> None:
        for number, line in enumerate(data.split(b"\n")[:-1], start=1):
            hold, leaf = fmt.parse_transfer_line(line, fmt.OPENING_HOLDS, number)
            if hold.kind is not TransferKind.PENDING or hold.seq >= first or hold.id in self.holds:
                raise AuditError(fmt.OPENING_HOLDS, "not an open hold from before the range", hold.seq)
            try:
                proof = proofs["opening_holds"][str(hold.seq)]
                verify_inclusion(hold.seq, checkpoint.size, leaf, proof, checkpoint.root)
            except (KeyError, ProofError) as exc:
                raise AuditError(
                    fmt.OPENING_HOLDS, f"not proven in the checkpoint's tree: {exc}", hold.seq
                ) from None
            self.holds[hold.id] = hold

    def previous(
        self,
        manifest: Mapping[str, Any],
        data: Mapping[str, bytes],
        proofs: dict[str, Any],
        checkpoint: Checkpoint,
    ) -> int | None:
        since = manifest.get("since_size")
        if since is None:
            if fmt.PREVIOUS_CHECKPOINT in data or proofs["consistency"]:
                raise AuditError(fmt.MANIFEST, "has a previous checkpoint but no since_size")
            return None
        if fmt.PREVIOUS_CHECKPOINT not in data:
            raise AuditError(fmt.PREVIOUS_CHECKPOINT, "file is missing")
        previous = verify_checkpoint(data[fmt.PREVIOUS_CHECKPOINT], self.key, fmt.PREVIOUS_CHECKPOINT)
        if previous.size != since or previous.origin != checkpoint.origin:
            raise AuditError(fmt.PREVIOUS_CHECKPOINT, "size or origin differs from the manifest's")
        if previous.size > 0:
            try:
                verify_consistency(
                    previous.size, checkpoint.size, proofs["consistency"], previous.root, checkpoint.root
                )
            except ProofError as exc:
                raise AuditError(fmt.PROOFS, f"consistency with the previous checkpoint: {exc}") from None
        return previous.size

    def transfers(
        self, manifest: Mapping[str, Any], files: Mapping[str, Any], first: int, end: int
    ) -> list[bytes]:
        data = self.read(fmt.TRANSFERS, files[fmt.TRANSFERS]["bytes"])
        window = manifest.get("window")
        low, high = (window["from_ms"], window["to_ms"]) if isinstance(window, dict) else (None, None)
        leaves: list[bytes] = []
        lines = data.split(b"\n")
        if lines[-1] != b"":
            raise AuditError(fmt.TRANSFERS, "last line is not terminated", first + len(lines) - 1)
        for offset, line in enumerate(lines[:-1]):
            seq = first + offset
            transfer, leaf = fmt.parse_transfer_line(line, fmt.TRANSFERS, seq)
            if transfer.seq != seq:
                raise AuditError(fmt.TRANSFERS, f"out of sequence (line says {transfer.seq})", seq)
            if (low is not None and transfer.ts_ms < low) or (high is not None and transfer.ts_ms >= high):
                raise AuditError(fmt.TRANSFERS, "outside the bundle's time window", seq)
            self.step(transfer, fmt.TRANSFERS)
            leaves.append(leaf)
        if len(leaves) != end - first:
            raise AuditError(fmt.TRANSFERS, f"holds {len(leaves)} transfers, the manifest says {end - first}")
        self.check_digest(fmt.TRANSFERS, data, files)
        return leaves


def verify_bundle(directory: Path, key: VerifyKey) -> VerifyReport:
    """Verify the audit bundle in `directory` with the node's public `key`; AuditError names what is wrong."""
    return _Verifier(directory, key).run()


def _chain_problem(before: _Verifier, prev: VerifyReport, after: _Verifier, this: VerifyReport) -> str | None:
    """Why `this` bundle does not continue `prev` exactly, or None."""
    if this.previous_size is None:
        return "was not exported with --since, so it names no previous checkpoint"
    if this.origin != prev.origin or this.previous_size != prev.tree_size:
        return f"starts from a checkpoint of {this.previous_size} transfers; the previous bundle's has {prev.tree_size}"
    if after.raw.get(fmt.PREVIOUS_CHECKPOINT) != before.raw.get(fmt.CHECKPOINT):
        return "its previous checkpoint is not the previous bundle's checkpoint"
    if this.first_seq != prev.end_seq:
        return f"starts at seq {this.first_seq}; the previous bundle ends at {prev.end_seq}"
    for account_id, spec in before.specs.items():
        if after.specs.get(account_id) != spec:
            return f"account {account_id!r} is missing or differs from the previous bundle's"
        closed = before.closed[account_id]
        if closed is not None and after.closed[account_id] != closed:
            return f"account {account_id!r} was closed at {closed}; this bundle says otherwise"
    for account_id, opening in after.opening.items():
        expected = before.balances.get(account_id, Balance())
        if opening != expected:
            return f"opening balance of {account_id!r} is not the previous bundle's closing balance"
    if after.opening_hold_ids != frozenset(before.holds):
        return "its opening holds are not the holds the previous bundle left open"
    return None


def verify_chain(previous: Path, directory: Path, key: VerifyKey) -> VerifyReport:
    """Verify `previous`, then `directory` (a `--since` export from it), and that the second continues
    the first exactly. AuditError names the failing bundle's file, or `previous-bundle` for a broken link."""
    before = _Verifier(previous, key)
    try:
        prev = before.run()
    except AuditError as exc:
        raise AuditError(f"previous bundle {exc.where}", exc.message, exc.seq) from None
    after = _Verifier(directory, key)
    this = after.run()
    problem = _chain_problem(before, prev, after, this)
    if problem is not None:
        raise AuditError("previous-bundle", problem)
    return replace(this, chained=True)


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle that verified, with what it proves: accounts, balances at both ends, the transfers."""

    report: VerifyReport
    window: tuple[int, int] | None  # the signed manifest's [from_ms, to_ms), if it was exported for one
    specs: Mapping[str, AccountSpec]
    opening: Mapping[str, Balance]
    closing: Mapping[str, Balance]
    transfer_lines: bytes  # transfers.jsonl exactly as verified

    def transfers(self) -> list[Transfer]:
        """The bundle's transfers, in seq order."""
        return [
            fmt.parse_transfer_line(line, fmt.TRANSFERS, self.report.first_seq + offset)[0]
            for offset, line in enumerate(self.transfer_lines.split(b"\n")[:-1])
        ]


def open_bundle(directory: Path, key: VerifyKey) -> VerifiedBundle:
    """Verify the bundle in `directory` (as `verify_bundle`) and return what it proves."""
    verifier = _Verifier(directory, key)
    report = verifier.run()
    window = orjson.loads(verifier.raw[fmt.MANIFEST]).get("window")
    return VerifiedBundle(
        report=report,
        window=None if window is None else (int(window["from_ms"]), int(window["to_ms"])),
        specs=dict(verifier.specs),
        opening=verifier.opening,
        closing=verifier.balances,
        transfer_lines=verifier.raw[fmt.TRANSFERS],
    )
