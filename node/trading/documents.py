"""The signed documents of a trade, built and checked with no I/O.

Every document is canonical JSON signed by its issuer (federation.documents); hashes are SHA-256
of a document's signing bytes (`sha256_of`, signatures excluded) or of a whole container (`digest`).

    trade request (buyer)   cpnode.trade-request.v1: trade_id, items [{offer_id, units, hours,
                            price_per_unit_hour, currency, amount}], amount, currency, and for an
                            order that runs a task, `task` (the task document, node.tasks.sold)
    acceptance (seller)     cpnode.trade-acceptance.v1: trade_id, request_sha256, items, amount,
                            currency, hold_expires_ts
    refusal (seller)        cpnode.trade-refusal.v1: trade_id, request_sha256, error, message
    receipt (both)          cpnode.trade-receipt.v1 {trade_id, request, acceptance}: the co-signed
                            record; its digest is the `trade_digest` of both ledgers' holds
    settlement (buyer)      cpnode.trade-settlement.v1 (federation.settlement): used_hours, amount,
                            receipt_sha256; for metered usage also used_s and usage_sha256
    settlement receipt      cpnode.settlement-receipt.v1: trade_id, settlement_sha256, state
      (seller)              (settled | voided | cancelled | refused), amount, currency, acceptance
    settlement record       cpnode.settlement-record.v1 {trade_id, settlement, receipt}: its digest
                            is the `trade_digest` of both ledgers' posts and voids
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation import canonical
from federation.documents import SIGNATURES, load_document, sign_document, signing_bytes
from federation.httpsig import Identity
from federation.settlement import SETTLEMENT_TYPE, SUMMARY_REQUEST_TYPE
from federation.trades import TRADE_REQUEST_TYPE
from node.trading.errors import OrderRequestError, ProtocolError

ACCEPTANCE_TYPE = "cpnode.trade-acceptance.v1"
REFUSAL_TYPE = "cpnode.trade-refusal.v1"
RECEIPT_TYPE = "cpnode.trade-receipt.v1"
SETTLEMENT_RECEIPT_TYPE = "cpnode.settlement-receipt.v1"
SETTLEMENT_RECORD_TYPE = "cpnode.settlement-record.v1"
SETTLEMENT_STATES = frozenset({"settled", "voided", "cancelled", "refused"})


@dataclass(frozen=True)
class Terms:
    """What one trade buys: an offer, units for hours at a price, and the total."""

    offer_id: str
    units: int
    hours: int
    price_per_unit_hour: int
    currency: str
    amount: int

    def item(self) -> dict[str, Any]:
        """The terms as a document item."""
        return {
            "offer_id": self.offer_id,
            "units": self.units,
            "hours": self.hours,
            "price_per_unit_hour": self.price_per_unit_hour,
            "currency": self.currency,
            "amount": self.amount,
        }


def sha256_of(document: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a signed document's signing bytes (what its signatures cover)."""
    return hashlib.sha256(signing_bytes(document)).hexdigest()


def read_signed(data: bytes) -> tuple[dict[str, Any], str]:
    """A signed document from its stored bytes, and its `sha256_of`, from one parse (what the
    signatures cover comes out of the parse, not a second encoding)."""
    document, payload = load_document(data)
    return document, hashlib.sha256(payload).hexdigest()


def signed_encoded(document: dict[str, Any]) -> tuple[bytes, str]:
    """A signed document's canonical bytes (to store or send) and its `sha256_of`, from one
    encoding of its members."""
    data, payload = canonical.encode_object(document, SIGNATURES)
    return data, hashlib.sha256(payload).hexdigest()


def receipt_encoded(
    request: Mapping[str, Any],
    request_bytes: bytes,
    accepted: Mapping[str, Any],
    accepted_bytes: bytes | None = None,
) -> tuple[bytes, str]:
    """`encoded(receipt(request, accepted))`, put together from the two documents' own canonical
    bytes when both are known (`request_bytes`, `accepted_bytes`: exactly `canonical.encode` of
    each) instead of encoding them again; the same DocumentError for a receipt nested too deep."""
    if accepted_bytes is None:
        return encoded(receipt(request, accepted))
    for document in (request, accepted):  # the receipt nests each one level deeper
        canonical.check_value(document, canonical.DEFAULT_MAX_DEPTH - 1)
    data = b"".join(
        (
            b'{"acceptance":',
            accepted_bytes,
            b',"request":',
            request_bytes,
            b',"trade_id":',
            canonical.encode(request["trade_id"]),
            b',"type":',
            canonical.encode(RECEIPT_TYPE),
            b"}",
        )
    )
    return data, hashlib.sha256(data).hexdigest()


def digest(container: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a container's canonical bytes, signatures of the documents inside included."""
    return encoded(container)[1]


def encoded(container: Mapping[str, Any]) -> tuple[bytes, str]:
    """A container's canonical bytes (to store) and their `digest`, from one encoding."""
    data = canonical.encode(container)
    return data, hashlib.sha256(data).hexdigest()


def _signed(identity: Identity, document: dict[str, Any]) -> dict[str, Any]:
    return sign_document({**document, "issuer": identity.node}, identity.key)


def trade_request(
    identity: Identity,
    seller: str,
    trade_id: str,
    terms: Terms,
    now_ts: int,
    task: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The buyer's signed trade request (carrying the task document the seller is to run, if any)."""
    body: dict[str, Any] = {
        "type": TRADE_REQUEST_TYPE,
        "audience": seller,
        "trade_id": trade_id,
        "issued_ts": now_ts,
        "items": [terms.item()],
        "amount": terms.amount,
        "currency": terms.currency,
    }
    if task is not None:
        body["task"] = dict(task)
    return _signed(identity, body)


def request_terms(document: Mapping[str, Any]) -> Terms:
    """The terms of a trade request the federation frame already checked; OrderRequestError naming
    what is missing. One item per trade: a consumer's order buys one offer."""
    items = document["items"]
    if len(items) != 1:
        raise OrderRequestError("a trade buys exactly one offer (one item)", code="one_item_per_trade")
    item = items[0]
    for name in ("price_per_unit_hour", "amount"):
        if type(item.get(name)) is not int or item[name] < 0:
            raise OrderRequestError(f"items[0].{name} must be a non-negative integer", code="bad_terms")
    if not isinstance(item.get("currency"), str):
        raise OrderRequestError("items[0].currency must be a string", code="bad_terms")
    terms = Terms(
        item["offer_id"],
        item["units"],
        item["hours"],
        item["price_per_unit_hour"],
        item["currency"],
        item["amount"],
    )
    if document.get("amount") != terms.amount or document.get("currency") != terms.currency:
        raise OrderRequestError("the request's amount and currency must be its item's", code="bad_terms")
    if terms.amount != terms.units * terms.hours * terms.price_per_unit_hour:
        raise OrderRequestError("amount must be units × hours × price_per_unit_hour", code="bad_terms")
    return terms


def acceptance(
    identity: Identity,
    buyer: str,
    trade_id: str,
    request_sha256: str,
    terms: Terms,
    hold_expires_ts: int,
    now_ts: int,
) -> dict[str, Any]:
    """The seller's signed acceptance of a trade request."""
    return _signed(
        identity,
        {
            "type": ACCEPTANCE_TYPE,
            "audience": buyer,
            "trade_id": trade_id,
            "request_sha256": request_sha256,
            "issued_ts": now_ts,
            "items": [terms.item()],
            "amount": terms.amount,
            "currency": terms.currency,
            "hold_expires_ts": hold_expires_ts,
        },
    )


def refusal(
    identity: Identity,
    buyer: str,
    trade_id: str,
    request_sha256: str | None,
    code: str,
    message: str,
    now_ts: int,
) -> dict[str, Any]:
    """The seller's signed refusal (it also reads as an error body: `error` and `message`)."""
    return _signed(
        identity,
        {
            "type": REFUSAL_TYPE,
            "audience": buyer,
            "trade_id": trade_id,
            "request_sha256": request_sha256,
            "issued_ts": now_ts,
            "error": code,
            "message": message,
        },
    )


def receipt(request: Mapping[str, Any], accepted: Mapping[str, Any]) -> dict[str, Any]:
    """The co-signed record of a trade: the buyer's request and the seller's acceptance of it."""
    return {"type": RECEIPT_TYPE, "trade_id": request["trade_id"], "request": request, "acceptance": accepted}


def check_acceptance(
    document: Mapping[str, Any], seller: str, buyer: str, trade_id: str, request_sha256: str, terms: Terms
) -> int:
    """Check an acceptance (signature checked by the caller) against what we asked; its hold expiry."""
    expected = {
        "type": ACCEPTANCE_TYPE,
        "issuer": seller,
        "audience": buyer,
        "trade_id": trade_id,
        "request_sha256": request_sha256,
        "amount": terms.amount,
        "currency": terms.currency,
        "items": [terms.item()],
    }
    for name, value in expected.items():
        if document.get(name) != value:
            raise ProtocolError(f"{seller}'s acceptance has a different {name}", code="bad_acceptance")
    expires = document.get("hold_expires_ts")
    if type(expires) is not int or expires <= 0:
        raise ProtocolError(f"{seller}'s acceptance lacks hold_expires_ts", code="bad_acceptance")
    return expires


def settlement(
    identity: Identity,
    seller: str,
    trade_id: str,
    used_hours: int,
    amount: int,
    currency: str,
    receipt_sha256: str | None,
    now_ts: int,
    metered: tuple[int, str | None] | None = None,
) -> dict[str, Any]:
    """The buyer's signed settlement (used_hours 0 cancels); `metered` (used_s, usage_sha256) for
    usage metered to the second, None for hours typed by hand."""
    body: dict[str, Any] = {
        "type": SETTLEMENT_TYPE,
        "audience": seller,
        "trade_id": trade_id,
        "issued_ts": now_ts,
        "used_hours": used_hours,
        "amount": amount,
        "currency": currency,
        "receipt_sha256": receipt_sha256,
    }
    if metered is not None:
        body["used_s"], body["usage_sha256"] = metered
    return _signed(identity, body)


def settlement_receipt(
    identity: Identity,
    buyer: str,
    trade_id: str,
    settlement_sha256: str,
    state: str,
    amount: int,
    currency: str,
    accepted: Mapping[str, Any] | None,
    now_ts: int,
) -> dict[str, Any]:
    """The seller's signed answer to a settlement: what it did, with its acceptance if it had one."""
    if state not in SETTLEMENT_STATES:
        raise ValueError(f"unknown settlement state {state!r}")
    return _signed(
        identity,
        {
            "type": SETTLEMENT_RECEIPT_TYPE,
            "audience": buyer,
            "trade_id": trade_id,
            "settlement_sha256": settlement_sha256,
            "issued_ts": now_ts,
            "state": state,
            "amount": amount,
            "currency": currency,
            "acceptance": None if accepted is None else dict(accepted),
        },
    )


def check_settlement_receipt(
    document: Mapping[str, Any], seller: str, buyer: str, trade_id: str, settlement_sha256: str
) -> str:
    """Check a settlement receipt (signature checked by the caller); its state."""
    expected = {
        "type": SETTLEMENT_RECEIPT_TYPE,
        "issuer": seller,
        "audience": buyer,
        "trade_id": trade_id,
        "settlement_sha256": settlement_sha256,
    }
    for name, value in expected.items():
        if document.get(name) != value:
            raise ProtocolError(f"{seller}'s settlement receipt has a different {name}", code="bad_receipt")
    state = document.get("state")
    if state not in SETTLEMENT_STATES or type(document.get("amount")) is not int:
        raise ProtocolError(
            f"{seller}'s settlement receipt has no valid state and amount", code="bad_receipt"
        )
    return str(state)


def settlement_record(settled: Mapping[str, Any], answered: Mapping[str, Any]) -> dict[str, Any]:
    """The co-signed record of a settlement: the buyer's settlement and the seller's receipt."""
    return {
        "type": SETTLEMENT_RECORD_TYPE,
        "trade_id": settled["trade_id"],
        "settlement": settled,
        "receipt": answered,
    }


def summary_request(
    identity: Identity, partner: str, from_ms: int, to_ms: int, margin_ms: int, now_ts: int
) -> dict[str, Any]:
    """A signed request for the partner's reconciliation summary of a window."""
    return _signed(
        identity,
        {
            "type": SUMMARY_REQUEST_TYPE,
            "audience": partner,
            "issued_ts": now_ts,
            "window": {"from_ms": from_ms, "to_ms": to_ms},
            "margin_ms": margin_ms,
        },
    )
