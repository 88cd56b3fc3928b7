"""The ledger's data: account and transfer records, requests, results, and their one byte form.

A stored transfer's canonical bytes (JSON, keys sorted, no whitespace, every field present, ASCII
only) are the data of its Merkle leaf, the line of an audit bundle, and what an auditor re-hashes.
Amounts are integer minor units; times are UTC epoch milliseconds (`_ms`) or seconds (`_s`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import orjson

MAX_AMOUNT = 2**53 - 1  # every amount fits a canonical-JSON integer
MAX_BALANCE = 2**63 - 1  # a balance column is a signed 64-bit integer on both backends
MAX_CODE = 65_535
CORRECTION_CODE = 9_000  # transfers that correct a reconciliation discrepancy
EXPIRE_ID_PREFIX = "~expire:"  # clients cannot use '~', so expiry ids never collide with theirs


class AccountKind(enum.StrEnum):
    """What an account stands for."""

    CONSUMER = "consumer"  # a user of the platform paying for compute
    PROVIDER = "provider"  # a resource pool being paid
    PARTNER = "partner"  # another node we trade with (what we owe it / it owes us)
    ESCROW = "escrow"  # funds held for a purpose
    FEES = "fees"  # the platform's fee income
    EXTERNAL = "external"  # money entering or leaving the ledger (bank, top-ups, payouts)


class TransferKind(enum.StrEnum):
    """Single-phase transfer, the three ways a hold is resolved, and the hold itself."""

    SINGLE = "single"
    PENDING = "pending"
    POST = "post"
    VOID = "void"
    EXPIRE = "expire"  # written only by the expiry sweeper


CLIENT_KINDS = frozenset({TransferKind.SINGLE, TransferKind.PENDING, TransferKind.POST, TransferKind.VOID})
RESOLVING_KINDS = frozenset({TransferKind.POST, TransferKind.VOID, TransferKind.EXPIRE})


class Status(enum.StrEnum):
    """The outcome of one transfer request (TigerBeetle's result codes, in our words)."""

    CREATED = "created"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELD = "exists_with_different_field"
    ID_ALREADY_FAILED = "id_already_failed"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    INVALID_REQUEST = "invalid_request"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    DEBIT_ACCOUNT_CLOSED = "debit_account_closed"
    CREDIT_ACCOUNT_CLOSED = "credit_account_closed"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    OVERFLOW = "overflow"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_MISMATCH = "pending_transfer_mismatch"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_ALREADY_EXPIRED = "pending_transfer_already_expired"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"


# Failures that are about the batch's shape or an existing id, not the transfer's own merits: they
# are not remembered, so the same id can be retried. Every other failure makes its id fail forever.
NOT_REMEMBERED = frozenset(
    {
        Status.CREATED,
        Status.EXISTS,
        Status.EXISTS_WITH_DIFFERENT_FIELD,
        Status.ID_ALREADY_FAILED,
        Status.LINKED_EVENT_FAILED,
        Status.LINKED_EVENT_CHAIN_OPEN,
    }
)


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An account to create. Its id is client-chosen; currency, kind and flags never change."""

    id: str
    currency: str
    kind: AccountKind
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    partner: str | None = None  # the partner node's name, for kind=partner


@dataclass(slots=True)
class Balance:
    """The four running totals of one account (mutable while a batch or a replay is applied)."""

    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        """(debits_pending, debits_posted, credits_pending, credits_posted)."""
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)

    def copy(self) -> Balance:
        """An independent copy."""
        return Balance(*self.as_tuple())


@dataclass(frozen=True, slots=True)
class Account:
    """An account as stored: its spec, balances and lifecycle."""

    spec: AccountSpec
    balance: Balance
    created_ms: int
    closed_seq: int | None = None  # transfers with seq >= closed_seq may not touch it
    closed_ms: int | None = None

    @property
    def id(self) -> str:
        """The account id."""
        return self.spec.id

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the CLI and API."""
        spec = asdict(self.spec)
        spec["kind"] = str(self.spec.kind)
        return {
            **spec,
            **asdict(self.balance),
            "created_ms": self.created_ms,
            "closed_seq": self.closed_seq,
            "closed_ms": self.closed_ms,
        }


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A client's transfer request. `linked=True` chains it with the next request of the batch.

    single/pending: debit_account, credit_account, currency and amount are required.
    post: pending_id and amount (1 ≤ amount ≤ the hold); accounts and currency, if given, must match.
    void: pending_id; amount must be absent. pending: timeout_s (optional) sets the hold's deadline.
    """

    id: str
    kind: TransferKind
    debit_account: str | None = None
    credit_account: str | None = None
    currency: str | None = None
    amount: int | None = None
    pending_id: str | None = None
    timeout_s: int | None = None
    code: int = 0
    linked: bool = False
    order_id: str | None = None
    trade_id: str | None = None
    partner: str | None = None
    trade_digest: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransferRequest:
        """Build a request from JSON; unknown keys and a bad kind raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        if "id" not in data or "kind" not in data:
            raise ValueError("'id' and 'kind' are required")
        try:
            kind = TransferKind(data["kind"])
        except ValueError:
            raise ValueError(f"kind must be one of {', '.join(sorted(CLIENT_KINDS))}") from None
        return cls(**{**data, "kind": kind})


class Transfer(NamedTuple):
    """A stored, immutable transfer; `seq` is its dense position and Merkle leaf index.

    Field order is the `ledger_transfers` column order, so a Transfer is its own row. For post, void
    and expire, `pending_amount` is the hold released and `amount` what was posted (0 for void and
    expire), so a transfer replays on its own without looking up its hold.
    """

    seq: int
    id: str
    kind: TransferKind
    debit_account: str
    credit_account: str
    currency: str
    amount: int
    pending_id: str | None
    pending_amount: int | None
    timeout_s: int | None
    expires_ms: int | None
    code: int
    linked: bool
    ts_ms: int
    order_id: str | None
    trade_id: str | None
    partner: str | None
    trade_digest: str | None

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (kind as its string)."""
        data = self._asdict()
        data["kind"] = str(self.kind)
        return data

    def leaf_data(self) -> bytes:
        """The canonical bytes hashed into this transfer's Merkle leaf."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transfer:
        """Parse a stored transfer strictly (exact keys and types), or raise ValueError naming the field."""
        expected = TRANSFER_FIELDS
        if set(data) != expected:
            missing = sorted(expected - set(data))
            extra = sorted(set(data) - expected)
            raise ValueError(f"fields differ: missing {missing}, unexpected {extra}")
        for name in _INT_FIELDS:
            _check_int(name, data[name], optional=name in _OPTIONAL_INT_FIELDS)
        for name in _STR_FIELDS:
            value = data[name]
            optional = name in _OPTIONAL_STR_FIELDS
            if not (isinstance(value, str) or (optional and value is None)):
                raise ValueError(f"{name} must be a string{' or null' if optional else ''}")
        if not isinstance(data["linked"], bool):
            raise ValueError("linked must be true or false")
        try:
            kind = TransferKind(data["kind"])
        except ValueError:
            raise ValueError(f"kind {data['kind']!r} is not a transfer kind") from None
        return cls(**{**data, "kind": kind})


def _check_int(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer{' or null' if optional else ''}")


TRANSFER_FIELDS = frozenset(Transfer._fields)
_INT_FIELDS = ("seq", "amount", "pending_amount", "timeout_s", "expires_ms", "code", "ts_ms")
_OPTIONAL_INT_FIELDS = frozenset({"pending_amount", "timeout_s", "expires_ms"})
_STR_FIELDS = (
    "id",
    "kind",
    "debit_account",
    "credit_account",
    "currency",
    "pending_id",
    "order_id",
    "trade_id",
    "partner",
    "trade_digest",
)
_OPTIONAL_STR_FIELDS = frozenset({"pending_id", "order_id", "trade_id", "partner", "trade_digest"})


@dataclass(frozen=True, slots=True)
class AccountResult:
    """The outcome of account spec number `index`: created, exists, or why not."""

    index: int
    id: str
    status: Status
    field: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the account now exists as asked."""
        return self.status in (Status.CREATED, Status.EXISTS)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "index": self.index,
            "id": self.id,
            "status": str(self.status),
            "field": self.field,
            "message": self.message,
        }


@dataclass(slots=True)
class TransferResult:
    """The outcome of request number `index` of a batch (not frozen: a batch makes thousands)."""

    index: int
    id: str
    status: Status
    field: str | None = None  # the differing or invalid field, when there is one
    seq: int | None = None  # the stored transfer's seq for created / exists
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the transfer is now stored (created now or before)."""
        return self.status in (Status.CREATED, Status.EXISTS)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "index": self.index,
            "id": self.id,
            "status": str(self.status),
            "field": self.field,
            "seq": self.seq,
            "message": self.message,
        }
