"""Two-phase holds as one transition table.

A pending transfer opens a hold. The hold resolves exactly once: post (any amount from 1 up to the
hold, the rest released), void (all released) or expire (the sweeper, at or after its deadline).
A post or void at or after the deadline is refused, so a deadline is never beaten by a late client.
The database backs "once" with a unique index on the resolving transfer's `pending_id`.
"""

from __future__ import annotations

import enum

from ledger.records import EXPIRE_ID_PREFIX, Status, Transfer, TransferKind


class HoldState(enum.StrEnum):
    """Where a hold is in its life."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


# (state, resolving kind) -> next state. Anything missing is refused with REFUSALS[state].
TRANSITIONS: dict[tuple[HoldState, TransferKind], HoldState] = {
    (HoldState.PENDING, TransferKind.POST): HoldState.POSTED,
    (HoldState.PENDING, TransferKind.VOID): HoldState.VOIDED,
    (HoldState.PENDING, TransferKind.EXPIRE): HoldState.EXPIRED,
}
REFUSALS: dict[HoldState, Status] = {
    HoldState.POSTED: Status.PENDING_TRANSFER_ALREADY_POSTED,
    HoldState.VOIDED: Status.PENDING_TRANSFER_ALREADY_VOIDED,
    HoldState.EXPIRED: Status.PENDING_TRANSFER_ALREADY_EXPIRED,
}
STATE_AFTER: dict[TransferKind, HoldState] = {kind: state for (_, kind), state in TRANSITIONS.items()}


def transition(state: HoldState, kind: TransferKind) -> HoldState | Status:
    """The hold's next state if `kind` may resolve it now, else the refusal status."""
    nxt = TRANSITIONS.get((state, kind))
    if nxt is not None:
        return nxt
    return REFUSALS.get(state, Status.PENDING_TRANSFER_NOT_PENDING)


def is_past_deadline(hold: Transfer, ts_ms: int) -> bool:
    """Whether the hold's deadline has come at `ts_ms` (a hold without timeout never expires)."""
    return hold.expires_ms is not None and ts_ms >= hold.expires_ms


def expiry_id(pending_id: str) -> str:
    """The id of the transfer that expires hold `pending_id` (clients cannot choose ids with '~')."""
    return EXPIRE_ID_PREFIX + pending_id


def resolution(
    hold: Transfer,
    kind: TransferKind,
    transfer_id: str,
    amount: int,
    seq: int,
    ts_ms: int,
    code: int,
    linked: bool = False,
    links: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None),
) -> Transfer:
    """The transfer that resolves `hold` by `kind`, posting `amount` (0 for void and expire).

    `links` are (order_id, trade_id, partner, trade_digest); those left out are taken from the hold,
    so every leg of a trade carries its trade id.
    """
    order_id, trade_id, partner, digest = links
    return tuple.__new__(  # Transfer._make without its Python frame and length check
        Transfer,
        (
            seq,
            transfer_id,
            kind,
            hold.debit_account,
            hold.credit_account,
            hold.currency,
            amount,
            hold.id,
            hold.amount,
            None,
            None,
            code,
            linked,
            ts_ms,
            order_id or hold.order_id,
            trade_id or hold.trade_id,
            partner or hold.partner,
            digest or hold.trade_digest,
        ),
    )
