"""Checks on requests before they touch state, and the idempotency comparison.

`check_transfer` finds the first malformed field of a transfer request; `check_account` does the
same for an account spec. `first_difference` compares a retried request with the stored transfer
of the same id and names the first field that differs, in a fixed order, so a client learns exactly
why its retry is not "exists".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ledger.records import (
    CLIENT_KINDS,
    MAX_AMOUNT,
    MAX_CODE,
    AccountKind,
    AccountSpec,
    Transfer,
    TransferKind,
    TransferRequest,
)

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
CURRENCY_RE = re.compile(r"[A-Z][A-Z0-9]{1,15}")
LINK_RE = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII without spaces
MAX_TIMEOUT_S = 10 * 366 * 24 * 3600

LINK_FIELDS = ("order_id", "trade_id", "partner", "trade_digest")
# The order in which a retried request is compared with what is stored.
COMPARED_FIELDS = (
    "kind",
    "debit_account",
    "credit_account",
    "currency",
    "amount",
    "pending_id",
    "timeout_s",
    "code",
    "linked",
    *LINK_FIELDS,
)
# A post or void may leave these out: they are taken from its hold.
_RESOLVE_OPTIONAL = frozenset({"debit_account", "credit_account", "currency", *LINK_FIELDS})


@dataclass(frozen=True, slots=True)
class Invalid:
    """The first problem found in a request: which field and why."""

    field: str
    message: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_str(value: Any, pattern: re.Pattern[str], field: str, what: str) -> Invalid | None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        return Invalid(field, f"{field} must be {what}")
    return None


def check_id(value: Any, field: str) -> Invalid | None:
    """A problem if `value` is not a valid transfer or account id."""
    return _check_str(
        value, ID_RE, field, "1–128 characters of A–Z a–z 0–9 . _ : @ / - starting alphanumeric"
    )


def _check_amount(value: Any) -> Invalid | None:
    if not _is_int(value) or not 1 <= value <= MAX_AMOUNT:
        return Invalid("amount", f"amount must be an integer from 1 to {MAX_AMOUNT} (minor units)")
    return None


def _check_accounts(req: TransferRequest, required: bool) -> Invalid | None:
    for field in ("debit_account", "credit_account"):
        value = getattr(req, field)
        if value is None and not required:
            continue
        problem = check_id(value, field)
        if problem:
            return problem
    if req.currency is not None or required:
        return _check_str(req.currency, CURRENCY_RE, "currency", "2–16 characters of A–Z 0–9 starting A–Z")
    return None


_ID = ID_RE.fullmatch
_CURRENCY = CURRENCY_RE.fullmatch
_LINK = LINK_RE.fullmatch
# Enum members read once: `TransferKind.SINGLE` is a descriptor lookup on every access.
_SINGLE, _PENDING, _POST, _VOID = (
    TransferKind.SINGLE,
    TransferKind.PENDING,
    TransferKind.POST,
    TransferKind.VOID,
)


def _links_ok(req: TransferRequest) -> bool:
    for link in (req.order_id, req.trade_id, req.partner, req.trade_digest):
        if link is not None and (type(link) is not str or _LINK(link) is None):
            return False
    return True


def well_formed(req: TransferRequest) -> bool:
    """A fast yes for the common, well-formed request (the write path calls this per transfer)."""
    code = req.code
    if type(code) is not int or code < 0 or code > MAX_CODE or type(req.linked) is not bool:
        return False
    transfer_id = req.id
    if type(transfer_id) is not str or _ID(transfer_id) is None:
        return False
    if (
        req.order_id is not None
        or req.trade_id is not None
        or req.partner is not None
        or req.trade_digest is not None
    ) and not _links_ok(req):
        return False
    kind, amount, timeout = req.kind, req.amount, req.timeout_s
    if kind is _SINGLE or kind is _PENDING:
        # Account ids and currency are checked by matching stored accounts (see rules.two_sided).
        return (
            type(amount) is int
            and 0 < amount <= MAX_AMOUNT
            and type(req.debit_account) is str
            and type(req.credit_account) is str
            and type(req.currency) is str
            and req.pending_id is None
            and (
                timeout is None
                or (kind is _PENDING and type(timeout) is int and 0 < timeout <= MAX_TIMEOUT_S)
            )
        )
    if kind is _POST or kind is _VOID:
        pending_id, debit, credit, currency = (
            req.pending_id,
            req.debit_account,
            req.credit_account,
            req.currency,
        )
        return (
            type(pending_id) is str
            and _ID(pending_id) is not None
            and timeout is None
            and (
                (kind is _POST and type(amount) is int and 0 < amount <= MAX_AMOUNT)
                or (kind is _VOID and amount is None)
            )
            and (debit is None or (type(debit) is str and _ID(debit) is not None))
            and (credit is None or (type(credit) is str and _ID(credit) is not None))
            and (currency is None or (type(currency) is str and _CURRENCY(currency) is not None))
        )
    return False


def check_transfer_field(req: TransferRequest, field: str) -> Invalid | None:
    """A problem with one account or currency field of a two-sided request, or None."""
    if field == "currency":
        return _check_str(req.currency, CURRENCY_RE, "currency", "2–16 characters of A–Z 0–9 starting A–Z")
    return check_id(getattr(req, field), field)


def check_transfer(req: TransferRequest) -> Invalid | None:
    """The first malformed field of `req`, or None if it is well formed."""
    problem = check_id(req.id, "id")
    if problem:
        return problem
    if req.kind not in CLIENT_KINDS:
        return Invalid("kind", f"kind must be one of {', '.join(sorted(CLIENT_KINDS))}")
    if not _is_int(req.code) or not 0 <= req.code <= MAX_CODE:
        return Invalid("code", f"code must be an integer from 0 to {MAX_CODE}")
    linked: object = req.linked  # requests are built from JSON: types are checked here, not trusted
    if not isinstance(linked, bool):
        return Invalid("linked", "linked must be true or false")
    for field in LINK_FIELDS:
        value = getattr(req, field)
        if value is not None and (problem := _check_str(value, LINK_RE, field, "1–128 printable ASCII")):
            return problem
    if req.kind in (TransferKind.SINGLE, TransferKind.PENDING):
        return _check_two_sided(req)
    return _check_resolution(req)


def _check_two_sided(req: TransferRequest) -> Invalid | None:
    problem = _check_accounts(req, required=True) or _check_amount(req.amount)
    if problem:
        return problem
    if req.pending_id is not None:
        return Invalid("pending_id", f"pending_id is only for post and void, not {req.kind}")
    if req.timeout_s is not None:
        if req.kind is TransferKind.SINGLE:
            return Invalid("timeout_s", "timeout_s is only for pending transfers")
        if not _is_int(req.timeout_s) or not 1 <= req.timeout_s <= MAX_TIMEOUT_S:
            return Invalid("timeout_s", f"timeout_s must be an integer from 1 to {MAX_TIMEOUT_S}")
    return None


def _check_resolution(req: TransferRequest) -> Invalid | None:
    problem = check_id(req.pending_id, "pending_id") or _check_accounts(req, required=False)
    if problem:
        return problem
    if req.timeout_s is not None:
        return Invalid("timeout_s", "timeout_s is only for pending transfers")
    if req.kind is TransferKind.POST:
        return _check_amount(req.amount)
    if req.amount is not None:
        return Invalid("amount", "a void releases the whole hold; leave amount out")
    return None


def check_account(spec: AccountSpec) -> Invalid | None:
    """The first malformed field of an account spec, or None."""
    problem = check_id(spec.id, "id") or _check_str(
        spec.currency, CURRENCY_RE, "currency", "2–16 characters of A–Z 0–9 starting A–Z"
    )
    if problem:
        return problem
    kind: object = spec.kind
    if not isinstance(kind, AccountKind):
        return Invalid("kind", f"kind must be one of {', '.join(k.value for k in AccountKind)}")
    for flag in ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits"):
        if not isinstance(getattr(spec, flag), bool):
            return Invalid(flag, f"{flag} must be true or false")
    if spec.debits_must_not_exceed_credits and spec.credits_must_not_exceed_debits:
        return Invalid("credits_must_not_exceed_debits", "an account cannot limit both debits and credits")
    if spec.kind is AccountKind.PARTNER:
        return _check_str(spec.partner, LINK_RE, "partner", "the partner node's name")
    if spec.partner is not None:
        return Invalid("partner", "partner is only for accounts of kind partner")
    return None


def first_difference(req: TransferRequest, stored: Transfer) -> str | None:
    """The first field where a retried request differs from the stored transfer with its id."""
    for field in COMPARED_FIELDS:
        wanted = getattr(req, field)
        have = getattr(stored, field)
        if (
            field in _RESOLVE_OPTIONAL
            and wanted is None
            and stored.kind in (TransferKind.POST, TransferKind.VOID)
        ):
            continue  # a resolution may leave out what it takes from its hold
        if field == "amount" and wanted is None and stored.kind is TransferKind.VOID:
            continue  # a void's stored amount is 0 (nothing posted)
        if wanted != have:
            return field
    return None


def first_account_difference(spec: AccountSpec, stored: AccountSpec) -> str | None:
    """The first field where a repeated account creation differs from the stored account."""
    for field in (
        "currency",
        "kind",
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "partner",
    ):
        if getattr(spec, field) != getattr(stored, field):
            return field
    return None
