"""A pure, deliberately plain in-memory ledger: the reference the property tests compare against.

It shares no code with `ledger.rules`: every rule is written out again in the most obvious way
(dicts, deep copies for chains), so a mistake in the real engine shows up as a disagreement.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from ledger import AccountKind, AccountSpec, TransferKind, TransferRequest

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
CURRENCY = re.compile(r"[A-Z][A-Z0-9]{1,15}")
LINK = re.compile(r"[\x21-\x7e]{1,128}")
MAX_AMOUNT = 2**53 - 1
MAX_BALANCE = 2**63 - 1
COMPARED = (
    "kind",
    "debit_account",
    "credit_account",
    "currency",
    "amount",
    "pending_id",
    "timeout_s",
    "code",
    "linked",
    "order_id",
    "trade_id",
    "partner",
    "trade_digest",
)
OPTIONAL_ON_RESOLUTION = {
    "debit_account",
    "credit_account",
    "currency",
    "order_id",
    "trade_id",
    "partner",
    "trade_digest",
}


@dataclass
class ModelAccount:
    spec: AccountSpec
    dp: int = 0
    dpo: int = 0
    cp: int = 0
    cpo: int = 0
    closed_seq: int | None = None


@dataclass
class State:
    accounts: dict[str, ModelAccount] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    hold_state: dict[str, str] = field(default_factory=dict)  # pending id -> pending/posted/voided/expired


class Refused(Exception):
    def __init__(self, status: str, field: str | None) -> None:
        super().__init__(status)
        self.status = status
        self.field = field


class Model:
    """Accounts, transfers, holds and failures with the ledger's rules, restated plainly."""

    def __init__(self, first_seq: int, last_ts: int) -> None:
        self.s = State()
        self.first_seq = first_seq
        self.last_ts = last_ts

    # -- accounts -----------------------------------------------------------------------------

    def create_account(self, spec: AccountSpec) -> tuple[str, str | None]:
        existing = self.s.accounts.get(spec.id)
        if existing is not None:
            for name in (
                "currency",
                "kind",
                "debits_must_not_exceed_credits",
                "credits_must_not_exceed_debits",
                "partner",
            ):
                if getattr(existing.spec, name) != getattr(spec, name):
                    return "exists_with_different_field", name
            return "exists", None
        self.s.accounts[spec.id] = ModelAccount(spec)
        return "created", None

    def close_account(self, account_id: str) -> bool:
        account = self.s.accounts[account_id]
        if account.closed_seq is not None:
            return True
        if account.dp or account.cp:
            return False
        account.closed_seq = self.first_seq + len(self.s.log)
        return True

    # -- transfers ----------------------------------------------------------------------------

    def next_seq(self) -> int:
        return self.first_seq + len(self.s.log)

    def submit(self, requests: list[TransferRequest], now: int) -> list[tuple[str, str | None]]:
        ts = max(now, self.last_ts)
        results: list[tuple[str, str | None] | None] = [None] * len(requests)
        index = 0
        while index < len(requests):
            end = index
            while end < len(requests) and requests[end].linked is True:
                end += 1
            if end == len(requests):  # chain never closes
                for member in range(index, len(requests)):
                    results[member] = (
                        ("linked_event_chain_open", None)
                        if member == len(requests) - 1
                        else ("linked_event_failed", None)
                    )
                break
            saved = copy.deepcopy(self.s)
            for member in range(index, end + 1):
                outcome = self.one(requests[member], ts)
                results[member] = outcome
                if outcome[0] not in ("created", "exists"):
                    failed_state = self.s.failed
                    self.s = saved
                    self.s.failed = failed_state  # failures are remembered even when the chain rolls back
                    for other in range(index, end + 1):
                        if other != member:
                            results[other] = ("linked_event_failed", None)
                    break
            index = end + 1
        if any(r is not None and r[0] == "created" for r in results):
            self.last_ts = ts
        return [r for r in results if r is not None]

    def one(self, r: TransferRequest, ts: int) -> tuple[str, str | None]:
        if not (isinstance(r.id, str) and ID.fullmatch(r.id)):
            return ("invalid_request", "id")
        if r.id in self.s.transfers:
            stored = self.s.transfers[r.id]
            for name in COMPARED:
                wanted = getattr(r, name)
                have = stored[name]
                if name in OPTIONAL_ON_RESOLUTION and wanted is None and stored["kind"] in ("post", "void"):
                    continue
                if name == "amount" and wanted is None and stored["kind"] == "void":
                    continue
                if wanted != have:
                    return ("exists_with_different_field", name)
            return ("exists", None)
        if r.id in self.s.failed:
            return ("id_already_failed", None)
        try:
            self.validate(r)
            if r.kind in (TransferKind.SINGLE, TransferKind.PENDING):
                self.two_sided(r, ts)
            else:
                self.resolve(r, ts)
        except Refused as refusal:
            self.s.failed[r.id] = refusal.status
            return (refusal.status, refusal.field)
        return ("created", None)

    # The reference states every field rule written out plainly, one check after another (see above).
    def validate(self, r: TransferRequest) -> None:  # noqa: C901
        def bad(name: str) -> Refused:
            return Refused("invalid_request", name)

        if r.kind not in (TransferKind.SINGLE, TransferKind.PENDING, TransferKind.POST, TransferKind.VOID):
            raise bad("kind")
        if not (type(r.code) is int and 0 <= r.code <= 65535):
            raise bad("code")
        if type(r.linked) is not bool:
            raise bad("linked")
        for name in ("order_id", "trade_id", "partner", "trade_digest"):
            value = getattr(r, name)
            if value is not None and not (isinstance(value, str) and LINK.fullmatch(value)):
                raise bad(name)
        two_sided = r.kind in (TransferKind.SINGLE, TransferKind.PENDING)

        def account_fields(required: bool) -> None:
            for name in ("debit_account", "credit_account"):
                value = getattr(r, name)
                if (required or value is not None) and not (isinstance(value, str) and ID.fullmatch(value)):
                    raise bad(name)
            if (required or r.currency is not None) and not (
                isinstance(r.currency, str) and CURRENCY.fullmatch(r.currency)
            ):
                raise bad("currency")

        def amount_ok() -> bool:
            return type(r.amount) is int and 1 <= r.amount <= MAX_AMOUNT

        if two_sided:
            account_fields(required=True)
            if not amount_ok():
                raise bad("amount")
            if r.pending_id is not None:
                raise bad("pending_id")
            if r.timeout_s is not None and (
                r.kind != TransferKind.PENDING
                or not (type(r.timeout_s) is int and 1 <= r.timeout_s <= 10 * 366 * 24 * 3600)
            ):
                raise bad("timeout_s")
            return
        if not (isinstance(r.pending_id, str) and ID.fullmatch(r.pending_id)):
            raise bad("pending_id")
        account_fields(required=False)
        if r.timeout_s is not None:
            raise bad("timeout_s")
        if r.kind == TransferKind.POST and not amount_ok():
            raise bad("amount")
        if r.kind == TransferKind.VOID and r.amount is not None:
            raise bad("amount")

    def account(self, account_id: str, side: str, currency: str) -> ModelAccount:
        account = self.s.accounts.get(account_id)
        if account is None:
            raise Refused(f"{side}_account_not_found", f"{side}_account")
        if account.spec.currency != currency:
            raise Refused("currency_mismatch", f"{side}_account")
        if account.closed_seq is not None:
            raise Refused(f"{side}_account_closed", f"{side}_account")
        return account

    def two_sided(self, r: TransferRequest, ts: int) -> None:
        assert r.debit_account is not None
        assert r.credit_account is not None
        assert r.currency is not None
        assert r.amount is not None
        if r.debit_account == r.credit_account:
            raise Refused("accounts_must_be_different", "credit_account")
        debit = self.account(r.debit_account, "debit", r.currency)
        credit = self.account(r.credit_account, "credit", r.currency)
        if debit.dp + debit.dpo + r.amount > MAX_BALANCE or credit.cp + credit.cpo + r.amount > MAX_BALANCE:
            raise Refused("overflow", "amount")
        if debit.spec.debits_must_not_exceed_credits and debit.dp + debit.dpo + r.amount > debit.cpo:
            raise Refused("exceeds_credits", "amount")
        if credit.spec.credits_must_not_exceed_debits and credit.cp + credit.cpo + r.amount > credit.dpo:
            raise Refused("exceeds_debits", "amount")
        pending = r.kind == TransferKind.PENDING
        if pending:
            debit.dp += r.amount
            credit.cp += r.amount
            self.s.hold_state[r.id] = "pending"
        else:
            debit.dpo += r.amount
            credit.cpo += r.amount
        timeout = r.timeout_s if pending else None
        self.store(
            {
                "id": r.id,
                "kind": str(r.kind),
                "debit_account": r.debit_account,
                "credit_account": r.credit_account,
                "currency": r.currency,
                "amount": r.amount,
                "pending_id": None,
                "pending_amount": None,
                "timeout_s": timeout,
                "expires_ms": None if timeout is None else ts + timeout * 1000,
                "code": r.code,
                "linked": r.linked,
                "ts_ms": ts,
                "order_id": r.order_id,
                "trade_id": r.trade_id,
                "partner": r.partner,
                "trade_digest": r.trade_digest,
            }
        )

    def store(self, record: dict[str, Any]) -> None:
        record["seq"] = self.next_seq()
        self.s.log.append(record)
        self.s.transfers[record["id"]] = record

    def resolve(self, r: TransferRequest, ts: int) -> None:
        assert r.pending_id is not None
        hold = self.s.transfers.get(r.pending_id)
        if hold is None:
            raise Refused("pending_transfer_not_found", "pending_id")
        if hold["kind"] != "pending":
            raise Refused("pending_transfer_not_pending", "pending_id")
        state = self.s.hold_state[r.pending_id]
        if state != "pending":
            raise Refused(f"pending_transfer_already_{state}", "pending_id")
        for name in ("debit_account", "credit_account", "currency"):
            if getattr(r, name) is not None and getattr(r, name) != hold[name]:
                raise Refused("pending_transfer_mismatch", name)
        if hold["expires_ms"] is not None and ts >= hold["expires_ms"]:
            raise Refused("pending_transfer_expired", "pending_id")
        amount = r.amount if r.kind == TransferKind.POST else 0
        assert amount is not None
        if amount > hold["amount"]:
            raise Refused("exceeds_pending_transfer_amount", "amount")
        self.release(hold, amount, str(r.kind), r.id, ts, r.code, r.linked, r)

    def release(
        self,
        hold: dict[str, Any],
        amount: int,
        kind: str,
        transfer_id: str,
        ts: int,
        code: int,
        linked: bool,
        r: Any,
    ) -> None:
        debit = self.s.accounts[hold["debit_account"]]
        credit = self.s.accounts[hold["credit_account"]]
        debit.dp -= hold["amount"]
        credit.cp -= hold["amount"]
        debit.dpo += amount
        credit.cpo += amount
        self.s.hold_state[hold["id"]] = {"post": "posted", "void": "voided", "expire": "expired"}[kind]
        links = {
            name: (getattr(r, name) if r is not None else None) or hold[name]
            for name in ("order_id", "trade_id", "partner", "trade_digest")
        }
        self.store(
            {
                "id": transfer_id,
                "kind": kind,
                "debit_account": hold["debit_account"],
                "credit_account": hold["credit_account"],
                "currency": hold["currency"],
                "amount": amount,
                "pending_id": hold["id"],
                "pending_amount": hold["amount"],
                "timeout_s": None,
                "expires_ms": None,
                "code": code,
                "linked": linked,
                "ts_ms": ts,
                **links,
            }
        )

    def sweep(self, now: int) -> int:
        ts = max(now, self.last_ts)
        due = sorted(
            (
                h
                for h in self.s.transfers.values()
                if h["kind"] == "pending"
                and self.s.hold_state[h["id"]] == "pending"
                and h["expires_ms"] is not None
                and h["expires_ms"] <= ts
            ),
            key=lambda h: (h["expires_ms"], h["seq"]),
        )
        for hold in due:
            self.release(hold, 0, "expire", "~expire:" + hold["id"], ts, hold["code"], False, None)
        self.last_ts = ts
        return len(due)

    def balances(self) -> dict[str, tuple[int, int, int, int]]:
        return {k: (a.dp, a.dpo, a.cp, a.cpo) for k, a in self.s.accounts.items()}


def spec(
    account_id: str, currency: str, kind: AccountKind = AccountKind.PROVIDER, *, no_overdraft: bool = False
) -> AccountSpec:
    """Shorthand for an account spec."""
    return AccountSpec(account_id, currency, kind, debits_must_not_exceed_credits=no_overdraft)
