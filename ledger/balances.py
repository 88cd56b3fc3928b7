"""Balance arithmetic: what one stored transfer does to its two accounts, limits and invariants.

The write path, the expiry sweeper, the audit verifier and the tests all move money through
`apply_transfer`, so "balances equal a replay of the transfers" means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ledger.records import MAX_BALANCE, AccountSpec, Balance, Status, Transfer, TransferKind


def apply_transfer(debit: Balance, credit: Balance, transfer: Transfer) -> None:
    """Apply a stored transfer's effect to the balances of its debit and credit accounts."""
    kind = transfer.kind
    amount = transfer.amount
    if kind is TransferKind.SINGLE:
        debit.debits_posted += amount
        credit.credits_posted += amount
    elif kind is TransferKind.PENDING:
        debit.debits_pending += amount
        credit.credits_pending += amount
    else:
        released = transfer.pending_amount or 0
        debit.debits_pending -= released
        credit.credits_pending -= released
        debit.debits_posted += amount
        credit.credits_posted += amount


def overflows(balance: Balance) -> bool:
    """Whether any total, or a side's pending plus posted, leaves the signed 64-bit range."""
    return (
        balance.debits_pending + balance.debits_posted > MAX_BALANCE
        or balance.credits_pending + balance.credits_posted > MAX_BALANCE
    )


def limit_violation(spec: AccountSpec, balance: Balance) -> Status | None:
    """The limit `balance` breaks under the account's flags (pending amounts count), or None."""
    if spec.debits_must_not_exceed_credits and (
        balance.debits_pending + balance.debits_posted > balance.credits_posted
    ):
        return Status.EXCEEDS_CREDITS
    if spec.credits_must_not_exceed_debits and (
        balance.credits_pending + balance.credits_posted > balance.debits_posted
    ):
        return Status.EXCEEDS_DEBITS
    return None


def negative(balance: Balance) -> bool:
    """Whether any total went below zero (a hold released more than was held)."""
    return min(balance.as_tuple()) < 0


def replay(transfers: Iterable[Transfer], balances: dict[str, Balance] | None = None) -> dict[str, Balance]:
    """Balances after applying `transfers` in order to `balances` (or to empty accounts)."""
    result = {} if balances is None else balances
    for transfer in transfers:
        debit = result.setdefault(transfer.debit_account, Balance())
        credit = result.setdefault(transfer.credit_account, Balance())
        apply_transfer(debit, credit, transfer)
    return result


def currency_totals(balances: Mapping[str, Balance], currency_of: Mapping[str, str]) -> dict[str, Balance]:
    """Per currency, the sum of every account's four totals."""
    totals: dict[str, Balance] = {}
    for account_id, balance in balances.items():
        total = totals.setdefault(currency_of[account_id], Balance())
        total.debits_pending += balance.debits_pending
        total.debits_posted += balance.debits_posted
        total.credits_pending += balance.credits_pending
        total.credits_posted += balance.credits_posted
    return totals


def double_entry_problems(totals: Mapping[str, Balance]) -> list[str]:
    """One line per currency whose debits and credits differ (pending or posted); empty when sound."""
    problems = []
    for currency, total in sorted(totals.items()):
        if total.debits_pending != total.credits_pending:
            problems.append(
                f"{currency}: pending debits {total.debits_pending} != pending credits {total.credits_pending}"
            )
        if total.debits_posted != total.credits_posted:
            problems.append(
                f"{currency}: posted debits {total.debits_posted} != posted credits {total.credits_posted}"
            )
    return problems
