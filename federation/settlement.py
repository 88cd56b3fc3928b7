"""The peer side of settlement and reconciliation: protocol frames around the node's handlers.

A settlement closes a trade the partner bought here; the partner signs::

    {"type": "cpnode.trade-settlement.v1", "issuer": PARTNER, "audience": US, "trade_id": ID,
     "issued_ts": T, "used_hours": H, "amount": N, "currency": C, "receipt_sha256": HEX|null}

(`used_hours` 0 cancels the trade); a settlement of metered usage adds `"used_s": S` (the seconds
used, `used_hours` then being the whole hours that cover them) and `"usage_sha256": HEX|null`
(the digest of the seller's signed usage record it settles, when there is one). It posts it to `POST /fed/v1/trades/{trade_id}/settlement`.
A summary request asks for this node's signed reconciliation summary of the trades it shares
with the caller over a time window; the partner signs::

    {"type": "cpnode.summary-request.v1", "issuer": PARTNER, "audience": US, "issued_ts": T,
     "window": {"from_ms": A, "to_ms": B}, "margin_ms": M}

and posts it to `POST /fed/v1/ledger/summary`. The frames check addressing, shape and the
signature by the authenticated key; what a document does is the node's business
(`PeerHandlers`), including idempotency: the node keys a settlement by (partner, trade id) in its
own tables, so a repeated settlement gets the stored receipt. Without a handler the node answers 503.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from federation import canonical
from federation.documents import load_document, verify_document
from federation.errors import DocumentError, FederationError
from federation.partners import Partner
from federation.service import Caller, FederationService

SETTLEMENT_TYPE = "cpnode.trade-settlement.v1"
SUMMARY_REQUEST_TYPE = "cpnode.summary-request.v1"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CURRENCY_RE = re.compile(r"[A-Z][A-Z0-9]{1,15}")

# (partner, checked settlement document) -> (HTTP status, answer document)
SettlementHandler = Callable[[Partner, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
# (partner, checked summary request) -> this node's signed summary document
SummaryHandler = Callable[[Partner, dict[str, Any]], Awaitable[dict[str, Any]]]


class SettlementUnavailable(FederationError, code="settlement_unavailable"):
    """This node has no settlement or reconciliation handler wired in."""


@dataclass
class PeerHandlers:
    """What the node does with settlements and summary requests (None: answer 503)."""

    settlement: SettlementHandler | None = None
    summary: SummaryHandler | None = None


def _addressing(document: dict[str, Any], kind: str, node: str, partner: str) -> None:
    if document.get("type") != kind:
        raise DocumentError(f"not a {kind} document", code="wrong_type")
    if document.get("issuer") != partner:
        raise DocumentError("document issuer is not the calling partner", code="wrong_issuer")
    if document.get("audience") != node:
        raise DocumentError("document is addressed to another node", code="wrong_audience")
    if type(document.get("issued_ts")) is not int or document["issued_ts"] < 0:
        raise DocumentError("issued_ts must be a non-negative integer")


def _non_negative(document: dict[str, Any], name: str, where: str = "") -> int:
    value = document.get(name)
    if type(value) is not int or value < 0:
        raise DocumentError(f"{where}{name} must be a non-negative integer")
    return value


def check_settlement(document: dict[str, Any], node: str, partner: str, trade_id: str) -> None:
    """Check a settlement document's addressing and shape against the trade id of its URL."""
    _addressing(document, SETTLEMENT_TYPE, node, partner)
    if document.get("trade_id") != trade_id:
        raise DocumentError("the document's trade_id is not the one in the URL", code="trade_id_mismatch")
    _non_negative(document, "used_hours")
    _non_negative(document, "amount")
    currency = document.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise DocumentError("currency must be a code like CNY")
    for name in ("receipt_sha256", "usage_sha256"):
        value = document.get(name)
        if value is not None and (not isinstance(value, str) or not _SHA256_RE.fullmatch(value)):
            raise DocumentError(f"{name} must be 64 lower-case hex digits or null")
    if "used_s" in document:
        used_s = _non_negative(document, "used_s")
        if document["used_hours"] != -(-used_s // 3600):
            raise DocumentError("used_hours must be the whole hours that cover used_s")
    elif document.get("usage_sha256") is not None:
        raise DocumentError("usage_sha256 goes with used_s (a settlement of metered usage)")


def check_summary_request(document: dict[str, Any], node: str, partner: str) -> None:
    """Check a summary request's addressing and shape (the node checks the window's rules)."""
    _addressing(document, SUMMARY_REQUEST_TYPE, node, partner)
    window = document.get("window")
    if not isinstance(window, dict) or set(window) != {"from_ms", "to_ms"}:
        raise DocumentError("window must be an object with from_ms and to_ms")
    _non_negative(window, "from_ms", "window.")
    _non_negative(window, "to_ms", "window.")
    _non_negative(document, "margin_ms")


async def handle_settlement(
    service: FederationService,
    handlers: PeerHandlers | None,
    caller: Caller,
    trade_id: str,
    body: bytes,
) -> tuple[int, bytes]:
    """Answer one settlement body from an authenticated caller: (HTTP status, response bytes)."""
    partner = caller.partner.name
    document, payload = load_document(body)
    check_settlement(document, service.name, partner, trade_id)
    verify_document(document, partner, {caller.kid: await service.caller_key(caller)}, payload)
    if handlers is None or handlers.settlement is None:
        raise SettlementUnavailable("this node does not settle trades")
    status, answer = await handlers.settlement(caller.partner, document)
    return status, canonical.encode(answer)


async def handle_summary(
    service: FederationService, handlers: PeerHandlers | None, caller: Caller, body: bytes
) -> bytes:
    """Answer one summary request from an authenticated caller with this node's signed summary."""
    partner = caller.partner.name
    document, payload = load_document(body)
    check_summary_request(document, service.name, partner)
    verify_document(document, partner, {caller.kid: await service.caller_key(caller)}, payload)
    if handlers is None or handlers.summary is None:
        raise SettlementUnavailable("this node does not answer reconciliation summaries")
    return canonical.encode(await handlers.summary(caller.partner, document))
