"""The account lifecycle as data: one transition table for consumers and operator users. No I/O.

    active ──suspend──▶ suspended ──reinstate──▶ active
    active | suspended ──close──▶ closed   (final; closing needs nothing left on the account)

A consumer's close has two writes (its ledger account is closed between them), so it passes through
`closing`: refused like a closed account, left only by a retried close (or the node's job) that
finishes it — `closed` — or, when something was left on the account after all, puts it back.

Real-name verification is beside the status: `verify` records `verified` or `rejected` with who
checked and when, on any account that is not closed. Every change is an audit event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, get_args

from node.errors import CodedError

Status = Literal["active", "suspended", "closing", "closed"]
Action = Literal["suspend", "reinstate", "close"]
Kind = Literal["consumer", "user"]
STATUSES: Final = get_args(Status)
ACTIONS: Final = get_args(Action)
KINDS: Final = get_args(Kind)
VERDICTS: Final = ("verified", "rejected")

TRANSITIONS: Final[dict[tuple[Status, Action], Status]] = {
    ("active", "suspend"): "suspended",
    ("suspended", "reinstate"): "active",
    ("active", "close"): "closed",
    ("suspended", "close"): "closed",
    ("closing", "close"): "closed",
}


class AccountError(CodedError, code="account_error"):
    """Root of the account errors (their HTTP statuses are in node.http.statuses)."""


class AccountRequestError(AccountError, ValueError, code="bad_request"):
    """A request about an account is malformed (400)."""


class UnknownAccountError(AccountError, LookupError, code="unknown_account"):
    """No such account (404)."""


class AccountStateError(AccountError, code="bad_transition"):
    """The account's status does not allow the change (409)."""


class AccountRefusedError(AccountError, PermissionError, code="account_suspended"):
    """A suspended or closed account's credentials are used (403)."""


def next_status(status: Status, action: Action) -> Status:
    """The status after `action`; AccountStateError naming the status when it is not allowed."""
    after = TRANSITIONS.get((status, action))
    if after is None:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == status)
        hint = f"; allowed: {', '.join(allowed)}" if allowed else "; a closed account stays closed"
        raise AccountStateError(f"cannot {action} an account that is {status}{hint}", account_status=status)
    return after


def check_verifiable(status: Status) -> None:
    """Refuse verifying a closed account (or one being closed)."""
    if status in ("closing", "closed"):
        raise AccountStateError("a closed account cannot be verified", account_status=status)


def close_blockers(
    balance: int, held: int, open_orders: Sequence[str], open_tasks: Sequence[str]
) -> list[str]:
    """What keeps an account from closing, each said in a few words (empty: it may close)."""
    blockers = []
    if balance:
        blockers.append(f"balance is {balance} (must be zero: refund or spend it first)")
    if held:
        blockers.append(f"{held} is held for open orders")
    if open_orders:
        blockers.append(f"open orders: {', '.join(open_orders[:10])}")
    if open_tasks:
        blockers.append(f"open tasks: {', '.join(open_tasks[:10])}")
    return blockers


def refusal(status: Status, who: str) -> AccountRefusedError | None:
    """The 403 a request with the credentials of an account in `status` gets, None when active (an
    account being closed is refused as closed)."""
    if status == "active":
        return None
    code = "account_suspended" if status == "suspended" else "account_closed"
    return AccountRefusedError(f"account {who} is {status}; its credentials are refused", code=code)
