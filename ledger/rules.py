"""The batch engine: requests in, results and new transfers out. No I/O.

Storage loads a `LedgerView` holding just what the batch touches (its accounts, the transfers and
failures with its ids, the holds it resolves), calls `apply_batch`, and writes the outcome in one
transaction. Rules, in the order they are checked for each request:

1. a malformed id is refused and not remembered;
2. an id already stored answers `exists`, or `exists_with_different_field` naming the field;
3. an id that failed before answers `id_already_failed`;
4. a malformed field is refused (and, like every later failure, remembered);
5. accounts must exist, differ, share the currency and be open; limits (pending counts) and the
   64-bit range must hold; a resolution needs an open hold whose deadline has not come.

Linked chains (`linked=True` joins a request to the next) succeed or fail as a whole: on the first
failure the chain's earlier effects are undone and its other members answer `linked_event_failed`.
Sequence numbers are given out densely in the order transfers are created.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ledger.holds import TRANSITIONS, HoldState, expiry_id, is_past_deadline, resolution, transition
from ledger.records import (
    MAX_BALANCE,
    NOT_REMEMBERED,
    Balance,
    Status,
    Transfer,
    TransferKind,
    TransferRequest,
    TransferResult,
)
from ledger.validation import check_id, check_transfer, check_transfer_field, first_difference, well_formed
from ledger.view import AccountState, BatchOutcome, Failure, LedgerView

__all__ = ["apply_batch", "expire_holds"]


class _Refused(Exception):  # internal control flow; never escapes this module
    def __init__(self, status: Status, field: str | None = None, message: str = "") -> None:
        super().__init__(message or str(status))
        self.status = status
        self.field = field
        self.message = message or str(status).replace("_", " ")


_SINGLE, _PENDING, _POST = TransferKind.SINGLE, TransferKind.PENDING, TransferKind.POST
_CREATED = Status.CREATED
_OPEN = HoldState.PENDING
_tuple_new = tuple.__new__  # Transfer._make without its Python frame and length check
_Result = TransferResult
# An undo entry restores a balance (Balance, old totals, None), drops a transfer ("t", id, None) or
# restores a hold's state ("h", pending id, old state).
_Undo = tuple[object, object, object]


class _Batch:
    """Applies requests to a view. Inside a chain it records undo entries; single requests need none,
    because every check runs before the first change."""

    def __init__(self, view: LedgerView, ts_ms: int, next_seq: int) -> None:
        self.accounts = view.accounts
        self.transfers = view.transfers
        self.failed = view.failed
        self.holds = view.holds
        self.ts_ms = ts_ms
        self.next_seq = next_seq
        self.created: list[Transfer] = []
        self.failures: list[Failure] = []
        self.touched: set[str] = set()
        self.undo: list[_Undo] | None = None

    def rollback(self, created_mark: int) -> None:
        undo = self.undo or []
        while undo:
            what, key, old = undo.pop()
            if isinstance(what, Balance):
                (what.debits_pending, what.debits_posted, what.credits_pending, what.credits_posted) = key  # type: ignore[misc]
            elif what == "t":
                self.transfers.pop(str(key), None)
            elif old is None:
                self.holds.pop(str(key), None)
            else:
                self.holds[str(key)] = old  # type: ignore[assignment]
        del self.created[created_mark:]

    def _account(self, account_id: str, side: str, currency: str) -> AccountState:
        state = self.accounts.get(account_id)
        if state is None:
            status = Status.DEBIT_ACCOUNT_NOT_FOUND if side == "debit" else Status.CREDIT_ACCOUNT_NOT_FOUND
            raise _Refused(status, f"{side}_account", f"account {account_id!r} does not exist")
        if state.spec.currency != currency:
            raise _Refused(
                Status.CURRENCY_MISMATCH,
                f"{side}_account",
                f"account {account_id!r} holds {state.spec.currency}, not {currency}",
            )
        if state.closed_seq is not None:
            status = Status.DEBIT_ACCOUNT_CLOSED if side == "debit" else Status.CREDIT_ACCOUNT_CLOSED
            raise _Refused(status, f"{side}_account", f"account {account_id!r} is closed")
        return state

    def _accounts_refused(self, req: TransferRequest) -> _Refused:
        """Why the debit/credit pair is refused (the fast path found something off)."""
        for name in ("debit_account", "credit_account", "currency"):
            problem = check_transfer_field(req, name)
            if problem is not None:
                return _Refused(Status.INVALID_REQUEST, problem.field, problem.message)
        assert req.debit_account is not None
        assert req.credit_account is not None
        assert req.currency is not None
        if req.debit_account == req.credit_account:
            return _Refused(Status.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account")
        try:
            self._account(req.debit_account, "debit", req.currency)
            self._account(req.credit_account, "credit", req.currency)
        except _Refused as refusal:
            return refusal
        raise AssertionError("accounts refused without a reason")

    def two_sided(self, req: TransferRequest) -> Transfer:
        debit_id, credit_id, currency, amount = (
            req.debit_account,
            req.credit_account,
            req.currency,
            req.amount,
        )
        if TYPE_CHECKING:  # well_formed() checked these; the asserts are for the type checker only
            assert debit_id is not None
            assert credit_id is not None
            assert currency is not None
            assert amount is not None
        accounts = self.accounts
        debit = accounts.get(debit_id)
        credit = accounts.get(credit_id)
        # Ids and currency were checked when the accounts were created, so matching them checks the request.
        if (
            debit is None
            or credit is None
            or debit is credit
            or debit.spec.currency != currency
            or credit.spec.currency != currency
            or debit.closed_seq is not None
            or credit.closed_seq is not None
        ):
            raise self._accounts_refused(req)
        db, cb = debit.balance, credit.balance
        debits_after = db.debits_pending + db.debits_posted + amount
        credits_after = cb.credits_pending + cb.credits_posted + amount
        if debits_after > MAX_BALANCE or credits_after > MAX_BALANCE:
            raise _Refused(Status.OVERFLOW, "amount", "a balance would leave the 64-bit range")
        # A debit can only break the debit account's limit, a credit only the credit account's.
        if debit.spec.debits_must_not_exceed_credits and debits_after > db.credits_posted:
            raise _Refused(Status.EXCEEDS_CREDITS, "amount", f"debits of {debit_id} would exceed its credits")
        if credit.spec.credits_must_not_exceed_debits and credits_after > cb.debits_posted:
            raise _Refused(Status.EXCEEDS_DEBITS, "amount", f"credits of {credit_id} would exceed its debits")
        kind, ts_ms, transfer_id, created = req.kind, self.ts_ms, req.id, self.created
        timeout_s = req.timeout_s if kind is _PENDING else None
        transfer: Transfer = _tuple_new(
            Transfer,
            (
                self.next_seq + len(created),
                transfer_id,
                kind,
                debit_id,
                credit_id,
                currency,
                amount,
                None,
                None,
                timeout_s,
                None if timeout_s is None else ts_ms + timeout_s * 1000,
                req.code,
                req.linked,
                ts_ms,
                req.order_id,
                req.trade_id,
                req.partner,
                req.trade_digest,
            ),
        )
        undo = self.undo
        if undo is not None:
            undo.append((db, db.as_tuple(), None))
            undo.append((cb, cb.as_tuple(), None))
            undo.append(("t", transfer_id, None))
        if kind is _PENDING:
            db.debits_pending += amount
            cb.credits_pending += amount
            if undo is not None:
                undo.append(("h", transfer_id, self.holds.get(transfer_id)))
            self.holds[transfer_id] = _OPEN
        else:
            db.debits_posted += amount
            cb.credits_posted += amount
        touched = self.touched
        touched.add(debit_id)
        touched.add(credit_id)
        created.append(transfer)
        self.transfers[transfer_id] = transfer
        return transfer

    def resolve(self, req: TransferRequest) -> Transfer:
        pending_id, kind, amount = req.pending_id, req.kind, req.amount
        if TYPE_CHECKING:  # well_formed() checked it; the assert is for the type checker only
            assert pending_id is not None
        hold = self.transfers.get(pending_id)
        if hold is None:
            raise _Refused(Status.PENDING_TRANSFER_NOT_FOUND, "pending_id", f"no transfer {pending_id!r}")
        if hold.kind is not _PENDING:
            raise _Refused(Status.PENDING_TRANSFER_NOT_PENDING, "pending_id", f"{pending_id!r} is not a hold")
        state = self.holds.get(pending_id, _OPEN)
        nxt = TRANSITIONS.get((state, kind))  # the table itself; transition() names the refusal
        if nxt is None:
            raise _Refused(Status(transition(state, kind)), "pending_id")
        debit_id, credit_id, currency = req.debit_account, req.credit_account, req.currency
        if debit_id is not None and debit_id != hold.debit_account:
            raise _Refused(
                Status.PENDING_TRANSFER_MISMATCH, "debit_account", "debit_account differs from the hold's"
            )
        if credit_id is not None and credit_id != hold.credit_account:
            raise _Refused(
                Status.PENDING_TRANSFER_MISMATCH, "credit_account", "credit_account differs from the hold's"
            )
        if currency is not None and currency != hold.currency:
            raise _Refused(Status.PENDING_TRANSFER_MISMATCH, "currency", "currency differs from the hold's")
        ts_ms, expires_ms = self.ts_ms, hold.expires_ms
        if expires_ms is not None and ts_ms >= expires_ms:
            raise _Refused(Status.PENDING_TRANSFER_EXPIRED, "pending_id", "the hold's deadline has passed")
        if kind is not _POST:
            amount = 0
        elif TYPE_CHECKING:
            assert amount is not None
        if amount > hold.amount:
            raise _Refused(
                Status.EXCEEDS_PENDING_TRANSFER_AMOUNT, "amount", f"the hold is for {hold.amount} only"
            )
        links = (req.order_id, req.trade_id, req.partner, req.trade_digest)
        seq = self.next_seq + len(self.created)
        transfer = resolution(hold, kind, req.id, amount, seq, ts_ms, req.code, req.linked, links)
        return self.apply_resolution(transfer, nxt)

    def apply_resolution(self, transfer: Transfer, nxt: HoldState) -> Transfer:
        transfer_id, debit_id, credit_id = transfer[1], transfer[3], transfer[4]
        amount, pending_id, released = transfer[6], transfer[7], transfer[8]
        if TYPE_CHECKING:  # a resolution always names its hold and the amount it releases
            assert pending_id is not None
            assert released is not None
        debit = self.accounts[debit_id].balance
        credit = self.accounts[credit_id].balance
        undo = self.undo
        if undo is not None:
            undo.append((debit, debit.as_tuple(), None))
            undo.append((credit, credit.as_tuple(), None))
            undo.append(("h", pending_id, self.holds.get(pending_id)))
            undo.append(("t", transfer_id, None))
        # What balances.apply_transfer does for a resolution: release the hold, post `amount`
        # (totals never grow, so no limit can break).
        debit.debits_pending -= released
        credit.credits_pending -= released
        debit.debits_posted += amount
        credit.credits_posted += amount
        touched = self.touched
        touched.add(debit_id)
        touched.add(credit_id)
        self.holds[pending_id] = nxt
        self.created.append(transfer)
        self.transfers[transfer_id] = transfer
        return transfer

    def one(self, index: int, req: TransferRequest) -> TransferResult:
        fast = well_formed(req)
        transfer_id = req.id
        if not fast:
            id_problem = check_id(transfer_id, "id")
            if id_problem is not None:
                return self.refused(index, req, _Refused(Status.INVALID_REQUEST, "id", id_problem.message))
        existing = self.transfers.get(transfer_id)
        if existing is not None:
            differs = first_difference(req, existing)
            if differs is None:
                return _Result(index, transfer_id, Status.EXISTS, None, existing.seq)
            message = f"transfer {transfer_id!r} exists with a different {differs}"
            return _Result(
                index, transfer_id, Status.EXISTS_WITH_DIFFERENT_FIELD, differs, existing.seq, message
            )
        failed = self.failed
        if failed and transfer_id in failed:
            return _Result(
                index,
                transfer_id,
                Status.ID_ALREADY_FAILED,
                message=f"{transfer_id!r} failed: {failed[transfer_id]}",
            )
        if not fast:
            problem = check_transfer(req)
            if problem is not None:
                return self.refused(
                    index, req, _Refused(Status.INVALID_REQUEST, problem.field, problem.message)
                )
        kind = req.kind
        try:
            transfer = self.two_sided(req) if kind is _SINGLE or kind is _PENDING else self.resolve(req)
        except _Refused as refusal:
            return self.refused(index, req, refusal)
        return _Result(index, transfer_id, _CREATED, None, transfer[0])

    def refused(self, index: int, req: TransferRequest, refusal: _Refused) -> TransferResult:
        if refusal.status not in NOT_REMEMBERED and refusal.field != "id":
            self.failures.append(Failure(req.id, refusal.status, refusal.field))
            self.failed[req.id] = refusal.status
        return TransferResult(index, req.id, refusal.status, refusal.field, None, refusal.message)

    def chain(
        self, requests: Sequence[TransferRequest], first: int, last: int, results: list[TransferResult]
    ) -> None:
        created_mark = len(self.created)
        self.undo = []
        try:
            for index in range(first, last + 1):
                result = self.one(index, requests[index])
                results.append(result)
                if result.ok:
                    continue
                self.rollback(created_mark)
                del results[first:]
                for other in range(first, last + 1):
                    if other == index:
                        results.append(result)
                    else:
                        message = f"linked request {index} failed: {result.status}"
                        results.append(
                            TransferResult(
                                other, requests[other].id, Status.LINKED_EVENT_FAILED, message=message
                            )
                        )
                return
        finally:
            self.undo = None

    def outcome(self, results: list[TransferResult]) -> BatchOutcome:
        return BatchOutcome(results, self.created, self.failures, self.touched)


def apply_batch(
    view: LedgerView, requests: Sequence[TransferRequest], ts_ms: int, next_seq: int
) -> BatchOutcome:
    """Apply `requests` in order at time `ts_ms`, numbering new transfers from `next_seq`."""
    batch = _Batch(view, ts_ms, next_seq)
    results: list[TransferResult] = []
    append, one = results.append, batch.one
    count = len(requests)
    index = 0
    while index < count:
        request = requests[index]
        if request.linked is not True:
            append(one(index, request))
            index += 1
            continue
        last = index
        while last < count and requests[last].linked is True:
            last += 1
        if last == count:  # the batch ends inside the chain
            for member in range(index, count):
                status = Status.LINKED_EVENT_CHAIN_OPEN if member == count - 1 else Status.LINKED_EVENT_FAILED
                results.append(
                    TransferResult(member, requests[member].id, status, message="the chain never closes")
                )
            break
        batch.chain(requests, index, last, results)
        index = last + 1
    return batch.outcome(results)


def expire_holds(view: LedgerView, holds: Sequence[Transfer], ts_ms: int, next_seq: int) -> BatchOutcome:
    """Expire every hold in `holds` whose deadline has come and that is still pending at `ts_ms`."""
    batch = _Batch(view, ts_ms, next_seq)
    results = []
    for index, hold in enumerate(holds):
        if (
            not is_past_deadline(hold, ts_ms)
            or view.holds.get(hold.id, HoldState.PENDING) is not HoldState.PENDING
        ):
            continue
        seq = next_seq + len(batch.created)
        transfer = resolution(hold, TransferKind.EXPIRE, expiry_id(hold.id), 0, seq, ts_ms, hold.code)
        batch.apply_resolution(transfer, HoldState.EXPIRED)
        results.append(TransferResult(index, transfer.id, Status.CREATED, None, transfer.seq))
    return batch.outcome(results)
