"""What the batch engine works on and hands back: the slice of the ledger a batch touches, and the
outcome storage writes. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.holds import HoldState
from ledger.records import AccountSpec, Balance, Status, Transfer, TransferResult


@dataclass(slots=True)
class AccountState:
    """An account as the engine sees it: immutable spec, mutable balance, whether it is closed."""

    spec: AccountSpec
    balance: Balance
    closed_seq: int | None = None


@dataclass
class LedgerView:
    """The part of the ledger one batch needs; the engine updates it in place."""

    accounts: dict[str, AccountState] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)  # stored, by id
    failed: dict[str, Status] = field(default_factory=dict)  # remembered failures, by id
    holds: dict[str, HoldState] = field(default_factory=dict)  # by pending transfer id


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure to remember so that its id stays failed."""

    id: str
    status: Status
    field: str | None


@dataclass
class BatchOutcome:
    """What a batch did: one result per request, and what storage must write."""

    results: list[TransferResult]
    created: list[Transfer]
    failures: list[Failure]
    touched: set[str]  # accounts whose balance may have changed

    @property
    def resolved(self) -> list[str]:
        """Pending ids whose hold was resolved."""
        return [t.pending_id for t in self.created if t.pending_id is not None]
