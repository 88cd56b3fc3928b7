"""The schemas of the peer API's OpenAPI document (`federation.openapi`): documents, answers, errors."""

from __future__ import annotations

from typing import Any

from federation.catalog import CATALOG_TYPE, OFFER_FIELDS
from federation.keydoc import KEY_DOCUMENT_TYPE
from federation.login import LOGIN_TYPE
from federation.relay import FEED_PAGE
from federation.settlement import SETTLEMENT_TYPE, SUMMARY_REQUEST_TYPE

REF = "#/components/schemas/"
_INT = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


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
    signatures = {
        "type": "object",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
        "KeyDocument": {
            "type": "object",
            "required": ["type", "issuer", "issued_ts", "expires_ts", "keys", "signatures"],
            "properties": {
                "type": {"const": KEY_DOCUMENT_TYPE},
                "issuer": {"type": "string"},
                "issued_ts": _INT,
                "expires_ts": _INT,
                "signatures": signatures,
                "keys": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["kid", "public_key", "status", "valid_from_ts"],
                        "properties": {
                            "kid": {"type": "string"},
                            "public_key": {"type": "string"},
                            "status": {"enum": ["active", "retired"]},
                            "valid_from_ts": _INT,
                            "retired_ts": {"anyOf": [_INT, {"type": "null"}]},
                            "endorsement": {"type": "object", "required": ["kid", "sig"]},
                        },
                    },
                },
            },
        },
        "Challenge": {
            "type": "object",
            "required": ["challenge", "node", "expires_ts"],
            "properties": {
                "challenge": {"type": "string"},
                "node": {"type": "string"},
                "expires_ts": _INT,
            },
        },
        "LoginDocument": {
            "type": "object",
            "required": [
                "type",
                "issuer",
                "audience",
                "challenge",
                "client_nonce",
                "issued_ts",
                "signatures",
            ],
            "properties": {
                "type": {"const": LOGIN_TYPE},
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "challenge": {"type": "string"},
                "client_nonce": {"type": "string"},
                "issued_ts": _INT,
                "signatures": signatures,
            },
        },
        "Session": {
            "type": "object",
            "required": ["token", "token_type", "expires_ts", "node"],
            "properties": {
                "token": {"type": "string"},
                "token_type": {"const": "Bearer"},
                "expires_ts": _INT,
                "node": {"type": "string"},
            },
        },
        "CatalogHead": {
            "type": "object",
            "required": [
                "issuer",
                "audience",
                "version",
                "sha256",
                "issued_ts",
                "expires_ts",
                "offer_count",
            ],
            "properties": {
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "version": _INT,
                "sha256": _SHA256,
                "issued_ts": _INT,
                "expires_ts": _INT,
                "offer_count": _INT,
                "relay_seq": _INT,
            },
        },
        "Offer": _offer_schema(),
        "Catalog": {
            "type": "object",
            "required": [
                "type",
                "issuer",
                "audience",
                "version",
                "issued_ts",
                "expires_ts",
                "prev_sha256",
                "offers",
                "signatures",
            ],
            "properties": {
                "type": {"const": CATALOG_TYPE},
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "version": _INT,
                "issued_ts": _INT,
                "expires_ts": _INT,
                "prev_sha256": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "republishable": {"type": "boolean"},
                "offers": {"type": "array", "items": _ref("Offer")},
                "signatures": signatures,
            },
        },
        "TradeRequest": {
            "type": "object",
            "required": [
                "type",
                "issuer",
                "audience",
                "trade_id",
                "issued_ts",
                "items",
                "signatures",
            ],
            "properties": {
                "type": {"const": "cpnode.trade-request.v1"},
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "trade_id": {"type": "string"},
                "issued_ts": _INT,
                "signatures": signatures,
                "task": {
                    "type": "object",
                    "description": "the task the seller is to run: {task_id, spec} (node.tasks.sold)",
                },
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["offer_id", "units", "hours"],
                        "properties": {"offer_id": {"type": "string"}, "units": _INT, "hours": _INT},
                    },
                },
            },
        },
        "SettlementDocument": {
            "type": "object",
            "required": [
                "type",
                "issuer",
                "audience",
                "trade_id",
                "issued_ts",
                "used_hours",
                "amount",
                "currency",
                "receipt_sha256",
                "signatures",
            ],
            "properties": {
                "type": {"const": SETTLEMENT_TYPE},
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "trade_id": {"type": "string"},
                "issued_ts": _INT,
                "used_hours": _INT,
                "amount": _INT,
                "currency": {"type": "string"},
                "receipt_sha256": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "used_s": _INT,
                "usage_sha256": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "signatures": signatures,
            },
        },
        "SummaryRequest": {
            "type": "object",
            "required": [
                "type",
                "issuer",
                "audience",
                "issued_ts",
                "window",
                "margin_ms",
                "signatures",
            ],
            "properties": {
                "type": {"const": SUMMARY_REQUEST_TYPE},
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "issued_ts": _INT,
                "window": {
                    "type": "object",
                    "required": ["from_ms", "to_ms"],
                    "properties": {"from_ms": _INT, "to_ms": _INT},
                },
                "margin_ms": _INT,
                "signatures": signatures,
            },
        },
        "RelayFeed": {
            "type": "object",
            "required": ["issuer", "audience", "seq", "more", "entries"],
            "properties": {
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "seq": _INT,
                "more": {"type": "boolean"},
                "entries": {
                    "type": "array",
                    "maxItems": FEED_PAGE,
                    "items": {
                        "type": "object",
                        "required": ["issuer", "version", "sha256", "expires_ts", "seq"],
                        "properties": {
                            "issuer": {"type": "string"},
                            "version": _INT,
                            "sha256": _SHA256,
                            "expires_ts": _INT,
                            "seq": _INT,
                        },
                    },
                },
            },
        },
    }
