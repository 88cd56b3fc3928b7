"""The schemas of the peer API's OpenAPI document (`federation.openapi`): documents, answers, errors."""

from __future__ import annotations

from typing import Any

from federation.catalog import CATALOG_TYPE, OFFER_FIELDS
from federation.keydoc import KEY_DOCUMENT_TYPE
from federation.login import LOGIN_TYPE
from federation.relay import FEED_PAGE
from federation.settlement import SETTLEMENT_TYPE, SUMMARY_REQUEST_TYPE
from federation.trade_batches import BATCH_ANSWER_TYPE, BATCH_TYPE, MAX_BATCH_TRADES

REF = "#/components/schemas/"
_INT = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
_STR = {"type": "string"}
_STR_OR_NULL = {"anyOf": [_STR, {"type": "null"}]}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SIGNATURES = {
    "type": "object",
    "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object schema: the keys of `required` must be there, those of `optional` may be."""
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


def _signed(
    doc_type: str, fields: dict[str, Any], optional: dict[str, Any] | None = None, *, audience: bool = True
) -> dict[str, Any]:
    """A signed document of `doc_type`: its type, issuer, audience (unless it has none), issue time
    and signatures, and its own `fields`."""
    head: dict[str, Any] = {"type": {"const": doc_type}, "issuer": _STR}
    if audience:
        head["audience"] = _STR
    return _object({**head, "issued_ts": _INT, **fields, "signatures": _SIGNATURES}, optional)


def _offer_schema() -> dict[str, Any]:
    kinds: dict[type, dict[str, Any]] = {
        str: {"type": "string", "minLength": 1, "maxLength": 200},
        int: _INT,
        list: {"type": "array", "items": {"type": "string"}},
    }
    properties: dict[str, Any] = {}
    for name, (kind, required) in OFFER_FIELDS.items():
        schema = dict(kinds[kind])
        properties[name] = schema if required else {"anyOf": [schema, {"type": "null"}]}
    return {
        "type": "object",
        "required": [name for name, (_, required) in OFFER_FIELDS.items() if required],
        "properties": properties,
    }


def schemas() -> dict[str, Any]:
    """`components.schemas` of the OpenAPI document."""
    key = _object(
        {"kid": _STR, "public_key": _STR, "status": {"enum": ["active", "retired"]}, "valid_from_ts": _INT},
        {
            "retired_ts": {"anyOf": [_INT, {"type": "null"}]},
            "endorsement": {"type": "object", "required": ["kid", "sig"]},
        },
    )
    trade_item = _object({"offer_id": _STR, "units": _INT, "hours": _INT})
    feed_entry = _object(
        {"issuer": _STR, "version": _INT, "sha256": _SHA256, "expires_ts": _INT, "seq": _INT}
    )
    return {
        "Error": _object({"error": _STR, "message": _STR}),
        "KeyDocument": _signed(
            KEY_DOCUMENT_TYPE,
            {"expires_ts": _INT, "keys": {"type": "array", "minItems": 1, "items": key}},
            audience=False,
        ),
        "Challenge": _object({"challenge": _STR, "node": _STR, "expires_ts": _INT}),
        "LoginDocument": _signed(LOGIN_TYPE, {"challenge": _STR, "client_nonce": _STR}),
        "Session": _object(
            {"token": _STR, "token_type": {"const": "Bearer"}, "expires_ts": _INT, "node": _STR}
        ),
        "CatalogHead": _object(
            {
                "issuer": _STR,
                "audience": _STR,
                "version": _INT,
                "sha256": _SHA256,
                "issued_ts": _INT,
                "expires_ts": _INT,
                "offer_count": _INT,
            },
            {"relay_seq": _INT},
        ),
        "Offer": _offer_schema(),
        "Catalog": _signed(
            CATALOG_TYPE,
            {
                "version": _INT,
                "expires_ts": _INT,
                "prev_sha256": _STR_OR_NULL,
                "offers": {"type": "array", "items": _ref("Offer")},
            },
            {"republishable": {"type": "boolean"}},
        ),
        "TradeRequest": _signed(
            "cpnode.trade-request.v1",
            {"trade_id": _STR, "items": {"type": "array", "minItems": 1, "items": trade_item}},
            {
                "task": {
                    "type": "object",
                    "description": "the task the seller is to run: {task_id, spec} (node.tasks.sold)",
                }
            },
        ),
        "TradeBatch": _object(
            {
                "type": {"const": BATCH_TYPE},
                "requests": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_TRADES,
                    "items": _ref("TradeRequest"),
                },
            }
        ),
        "TradeBatchAnswer": _object(
            {
                "type": {"const": BATCH_ANSWER_TYPE},
                "answers": {
                    "type": "array",
                    "items": _object({"status": _INT, "body": {"type": "object"}}),
                },
            }
        ),
        "SettlementDocument": _signed(
            SETTLEMENT_TYPE,
            {
                "trade_id": _STR,
                "used_hours": _INT,
                "amount": _INT,
                "currency": _STR,
                "receipt_sha256": _STR_OR_NULL,
            },
            {"used_s": _INT, "usage_sha256": _STR_OR_NULL},
        ),
        "SummaryRequest": _signed(
            SUMMARY_REQUEST_TYPE,
            {"window": _object({"from_ms": _INT, "to_ms": _INT}), "margin_ms": _INT},
        ),
        "RelayFeed": _object(
            {
                "issuer": _STR,
                "audience": _STR,
                "seq": _INT,
                "more": {"type": "boolean"},
                "entries": {"type": "array", "maxItems": FEED_PAGE, "items": feed_entry},
            }
        ),
    }
