"""The life of a trade's claim as a table, and what the node may write with a claim: the pure core
of `federation.claims` (no I/O), whose module docstring draws the table."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

from sqlalchemy.engine import Connection

from federation.errors import ConflictError

# What the node writes with a trade's claim or with its answer, in the same transaction (one write
# transaction per step of the protocol instead of one more each).
ClaimWrite = Callable[[Connection], object]
ClaimState = Literal["free", "lapsed", "in_progress", "refused", "answered"]
ClaimEvent = Literal["claim", "renew", "finish", "release", "answer"]
TRANSITIONS: dict[tuple[ClaimState, ClaimEvent], ClaimState] = {
    ("free", "claim"): "in_progress",
    ("lapsed", "claim"): "in_progress",
    ("free", "answer"): "answered",
    ("lapsed", "answer"): "answered",
    ("in_progress", "claim"): "refused",
    ("in_progress", "renew"): "in_progress",
    ("in_progress", "finish"): "answered",
    ("in_progress", "release"): "free",
    ("answered", "claim"): "answered",
}


@dataclass(frozen=True)
class Answered:
    """What a claim's write returns when it was the whole trade: the answer, stored in the claim's
    transaction (so that transaction commits durably), and what to run once it has committed."""

    status: int
    response: bytes
    committed: Callable[[], None] = field(default=lambda: None)


class AnsweringWrite(abc.ABC):
    """A claim's write that may answer the trade itself (returning `Answered`): `claim_trade` then
    commits durably, as `finish_trade` would have."""

    @abc.abstractmethod
    def __call__(self, conn: Connection) -> object:
        """Write with the claim; `Answered` when the trade needs nothing more."""

    @classmethod
    def write_together(cls, conn: Connection, writes: Sequence[Self]) -> Sequence[object]:
        """The writes of several trades of one batch, of this one kind, in one go: one result per
        write, as calling them one after another would give (by default, that is what it does)."""
        return [write(conn) for write in writes]


def transition(state: ClaimState, event: ClaimEvent) -> ClaimState:
    """The state after `event`; ConflictError when the table has no such move."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ConflictError(f"a trade that is {state} cannot be {event}ed", code="bad_trade_state") from None
