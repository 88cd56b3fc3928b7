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
from dataclasses import dataclass, field

from ledger.balances import apply_transfer, limit_violation, overflows
from ledger.holds import HoldState, expiry_id, is_past_deadline, resolution, transition
from ledger.records import (
    NOT_REMEMBERED,
    AccountSpec,
    Balance,
    Status,
    Transfer,
    TransferKind,
    TransferRequest,
    TransferResult,
)
from ledger.validation import LINK_FIELDS, check_id, check_transfer, first_difference


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
    resolved: list[str]  # pending ids whose hold was resolved


class _Refused(Exception):  # internal control flow; never escapes this module
    def __init__(self, status: Status, field: str | None = None, message: str = "") -> None:
        super().__init__(message or str(status))
        self.status = status
        self.field = field
        self.message = message or str(status).replace("_", " ")


def chains(requests: Sequence[TransferRequest]) -> list[tuple[int, int, bool]]:
    """Split a batch into chains: (first index, last index, closed?). Unlinked requests are chains of one."""
    result = []
    start = 0
    for index, request in enumerate(requests):
        if not request.linked:
            result.append((start, index, True))
            start = index + 1
    if start < len(requests):
        result.append((start, len(requests) - 1, False))
    return result


class _Batch:
    def __init__(self, view: LedgerView, ts_ms: int, next_seq: int) -> None:
        self.view = view
        self.ts_ms = ts_ms
        self.next_seq = next_seq
        self.created: list[Transfer] = []
        self.failures: list[Failure] = []
        self.touched: set[str] = set()
        self.undo: list[tuple[str, str, object]] = []

    def rollback(self, mark: int, created_mark: int) -> None:
        while len(self.undo) > mark:
            what, key, old = self.undo.pop()
            if what == "balance":
                state = self.view.accounts[key]
                state.balance = old  # type: ignore[assignment]
            elif what == "hold":
                if old is None:
                    self.view.holds.pop(key, None)
                else:
                    self.view.holds[key] = old  # type: ignore[assignment]
            else:
                self.view.transfers.pop(key, None)
        del self.created[created_mark:]

    def _store(self, transfer: Transfer) -> None:
        self.created.append(transfer)
        self.view.transfers[transfer.id] = transfer
        self.undo.append(("transfer", transfer.id, None))

    def _set_hold(self, pending_id: str, state: HoldState) -> None:
        self.undo.append(("hold", pending_id, self.view.holds.get(pending_id)))
        self.view.holds[pending_id] = state

    def _move(self, transfer: Transfer) -> None:
        debit = self.view.accounts[transfer.debit_account]
        credit = self.view.accounts[transfer.credit_account]
        new_debit, new_credit = debit.balance.copy(), credit.balance.copy()
        apply_transfer(new_debit, new_credit, transfer)
        if overflows(new_debit) or overflows(new_credit):
            raise _Refused(Status.OVERFLOW, "amount", "a balance would leave the 64-bit range")
        if transfer.kind in (TransferKind.SINGLE, TransferKind.PENDING):
            problem = limit_violation(debit.spec, new_debit) or limit_violation(credit.spec, new_credit)
            if problem is Status.EXCEEDS_CREDITS:
                raise _Refused(problem, "amount", f"debits of {debit.spec.id} would exceed its credits")
            if problem is Status.EXCEEDS_DEBITS:
                raise _Refused(problem, "amount", f"credits of {credit.spec.id} would exceed its debits")
        for state, new in ((debit, new_debit), (credit, new_credit)):
            self.undo.append(("balance", state.spec.id, state.balance))
            state.balance = new
            self.touched.add(state.spec.id)

    def _seq(self) -> int:
        return self.next_seq + len(self.created)

    def _account(self, account_id: str, side: str, currency: str) -> AccountState:
        state = self.view.accounts.get(account_id)
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

    def two_sided(self, req: TransferRequest) -> Transfer:
        assert req.debit_account is not None
        assert req.credit_account is not None
        assert req.currency is not None
        assert req.amount is not None
        if req.debit_account == req.credit_account:
            raise _Refused(Status.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account")
        self._account(req.debit_account, "debit", req.currency)
        self._account(req.credit_account, "credit", req.currency)
        timeout_s = req.timeout_s if req.kind is TransferKind.PENDING else None
        transfer = Transfer(
            seq=self._seq(),
            id=req.id,
            kind=req.kind,
            debit_account=req.debit_account,
            credit_account=req.credit_account,
            currency=req.currency,
            amount=req.amount,
            pending_id=None,
            pending_amount=None,
            timeout_s=timeout_s,
            expires_ms=None if timeout_s is None else self.ts_ms + timeout_s * 1000,
            code=req.code,
            linked=req.linked,
            ts_ms=self.ts_ms,
            order_id=req.order_id,
            trade_id=req.trade_id,
            partner=req.partner,
            trade_digest=req.trade_digest,
        )
        self._move(transfer)
        if req.kind is TransferKind.PENDING:
            self._set_hold(req.id, HoldState.PENDING)
        self._store(transfer)
        return transfer

    def resolve(self, req: TransferRequest) -> Transfer:
        assert req.pending_id is not None
        hold = self.open_hold(req.pending_id, req.kind)
        for name in ("debit_account", "credit_account", "currency"):
            wanted = getattr(req, name)
            if wanted is not None and wanted != getattr(hold, name):
                raise _Refused(Status.PENDING_TRANSFER_MISMATCH, name, f"{name} differs from the hold's")
        if is_past_deadline(hold, self.ts_ms):
            raise _Refused(Status.PENDING_TRANSFER_EXPIRED, "pending_id", "the hold's deadline has passed")
        amount = req.amount if req.kind is TransferKind.POST else 0
        assert amount is not None
        if amount > hold.amount:
            raise _Refused(
                Status.EXCEEDS_PENDING_TRANSFER_AMOUNT, "amount", f"the hold is for {hold.amount} only"
            )
        links = {name: getattr(req, name) for name in LINK_FIELDS}
        transfer = resolution(
            hold,
            req.kind,
            req.id,
            amount,
            self._seq(),
            self.ts_ms,
            code=req.code,
            linked=req.linked,
            links=links,
        )
        return self.apply_resolution(transfer)

    def open_hold(self, pending_id: str, kind: TransferKind) -> Transfer:
        hold = self.view.transfers.get(pending_id)
        if hold is None:
            raise _Refused(Status.PENDING_TRANSFER_NOT_FOUND, "pending_id", f"no transfer {pending_id!r}")
        if hold.kind is not TransferKind.PENDING:
            raise _Refused(Status.PENDING_TRANSFER_NOT_PENDING, "pending_id", f"{pending_id!r} is not a hold")
        nxt = transition(self.view.holds.get(pending_id, HoldState.PENDING), kind)
        if isinstance(nxt, Status):
            raise _Refused(nxt, "pending_id")
        return hold

    def apply_resolution(self, transfer: Transfer) -> Transfer:
        assert transfer.pending_id is not None
        self._move(transfer)
        nxt = transition(self.view.holds.get(transfer.pending_id, HoldState.PENDING), transfer.kind)
        assert isinstance(nxt, HoldState)
        self._set_hold(transfer.pending_id, nxt)
        self._store(transfer)
        return transfer

    def one(self, index: int, req: TransferRequest) -> TransferResult:
        id_problem = check_id(req.id, "id")
        if id_problem is not None:
            return self.refused(index, req, _Refused(Status.INVALID_REQUEST, "id", id_problem.message))
        existing = self.view.transfers.get(req.id)
        if existing is not None:
            differs = first_difference(req, existing)
            if differs is None:
                return TransferResult(index, req.id, Status.EXISTS, seq=existing.seq)
            return TransferResult(
                index,
                req.id,
                Status.EXISTS_WITH_DIFFERENT_FIELD,
                field=differs,
                seq=existing.seq,
                message=f"transfer {req.id!r} exists with a different {differs}",
            )
        if req.id in self.view.failed:
            failed = self.view.failed[req.id]
            return TransferResult(
                index, req.id, Status.ID_ALREADY_FAILED, message=f"{req.id!r} failed: {failed}"
            )
        problem = check_transfer(req)
        if problem is not None:
            return self.refused(index, req, _Refused(Status.INVALID_REQUEST, problem.field, problem.message))
        try:
            if req.kind in (TransferKind.SINGLE, TransferKind.PENDING):
                transfer = self.two_sided(req)
            else:
                transfer = self.resolve(req)
        except _Refused as refusal:
            return self.refused(index, req, refusal)
        return TransferResult(index, req.id, Status.CREATED, seq=transfer.seq)

    def refused(self, index: int, req: TransferRequest, refusal: _Refused) -> TransferResult:
        remember = refusal.status not in NOT_REMEMBERED and refusal.field != "id"
        if remember:
            self.failures.append(Failure(req.id, refusal.status, refusal.field))
            self.view.failed[req.id] = refusal.status
        return TransferResult(index, req.id, refusal.status, field=refusal.field, message=refusal.message)


def apply_batch(
    view: LedgerView, requests: Sequence[TransferRequest], ts_ms: int, next_seq: int
) -> BatchOutcome:
    """Apply `requests` in order at time `ts_ms`, numbering new transfers from `next_seq`."""
    batch = _Batch(view, ts_ms, next_seq)
    results: list[TransferResult | None] = [None] * len(requests)
    for first, last, closed in chains(requests):
        if not closed:
            for index in range(first, last + 1):
                status = Status.LINKED_EVENT_CHAIN_OPEN if index == last else Status.LINKED_EVENT_FAILED
                results[index] = TransferResult(
                    index, requests[index].id, status, message="the chain never closes"
                )
            continue
        mark, created_mark = len(batch.undo), len(batch.created)
        for index in range(first, last + 1):
            result = batch.one(index, requests[index])
            results[index] = result
            if result.ok:
                continue
            batch.rollback(mark, created_mark)
            for other in range(first, last + 1):
                if other != index:
                    results[other] = TransferResult(
                        other,
                        requests[other].id,
                        Status.LINKED_EVENT_FAILED,
                        message=f"linked request {index} failed: {result.status}",
                    )
            break
    resolved = [t.pending_id for t in batch.created if t.pending_id is not None]
    final = [r for r in results if r is not None]
    assert len(final) == len(requests)
    return BatchOutcome(final, batch.created, batch.failures, batch.touched, resolved)


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
        transfer = resolution(
            hold, TransferKind.EXPIRE, expiry_id(hold.id), 0, batch._seq(), ts_ms, code=hold.code
        )
        batch.apply_resolution(transfer)
        results.append(TransferResult(index, transfer.id, Status.CREATED, seq=transfer.seq))
    resolved = [t.pending_id for t in batch.created if t.pending_id is not None]
    return BatchOutcome(results, batch.created, [], batch.touched, resolved)
