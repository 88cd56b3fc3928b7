"""The OpenAPI 3.1 document of the peer API `/fed/v1`, served at `/fed/v1/openapi.json`.

Tests validate real responses against it and run schemathesis over it, so it states every status
a route can answer with.
"""

from __future__ import annotations

from typing import Any

from federation.catalog import CATALOG_TYPE, OFFER_FIELDS
from federation.keydoc import KEY_DOCUMENT_TYPE
from federation.login import LOGIN_TYPE
from federation.settlement import SETTLEMENT_TYPE, SUMMARY_REQUEST_TYPE
from federation.tokens import TOKEN_TYPE

_INT = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "malformed request or document",
        401: "signature, key or session token not accepted",
        404: "not found",
        409: "conflicts with stored state",
        413: "body too large",
        422: "refused by the node's rules (a signed refusal document carrying error and message)",
        429: "too many requests in flight",
        503: "not available on this node",
    }
    return {str(status): _json(_ref("Error"), texts[status]) for status in statuses}


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


SIGNED: list[dict[str, list[str]]] = [{"httpSignature": []}]
SIGNED_SESSION: list[dict[str, list[str]]] = [{"httpSignature": [], "session": []}]


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a JSON-ready dict."""
    signatures = {
        "type": "object",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cpnode peer API",
            "version": "1",
            "description": "Node-to-node federation: key document, login, catalogs, trades, settlement and "
            "reconciliation summaries. Every route but "
            "the key document and this document needs an RFC 9421 signature (label `cpnode`, Ed25519, covering "
            "@method, @target-uri, @authority, content-digest, cpnode-node and authorization when sent).",
        },
        "paths": {
            "/fed/v1/keys": {
                "get": {
                    "operationId": "getKeyDocument",
                    "summary": "The node's self-signed key document",
                    "responses": {"200": _json(_ref("KeyDocument"), "key document")},
                }
            },
            "/fed/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI document")},
                }
            },
            "/fed/v1/login/challenge": {
                "post": {
                    "operationId": "loginChallenge",
                    "summary": "A single-use login challenge",
                    "security": SIGNED,
                    "responses": {
                        "200": _json(_ref("Challenge"), "challenge"),
                        **_errors(400, 401, 413, 429),
                    },
                }
            },
            "/fed/v1/login": {
                "post": {
                    "operationId": "login",
                    "summary": "Exchange a signed login document for a session token",
                    "security": SIGNED,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("LoginDocument")}},
                    },
                    "responses": {
                        "200": _json(_ref("Session"), "session token"),
                        **_errors(400, 401, 413, 429),
                    },
                }
            },
            "/fed/v1/catalog/head": {
                "get": {
                    "operationId": "catalogHead",
                    "summary": "Version, hash and expiry of the caller's catalog",
                    "security": SIGNED_SESSION,
                    "responses": {"200": _json(_ref("CatalogHead"), "head"), **_errors(400, 401, 413, 429)},
                }
            },
            "/fed/v1/catalog": {
                "get": {
                    "operationId": "catalog",
                    "summary": "The signed catalog made for the caller",
                    "security": SIGNED_SESSION,
                    "responses": {"200": _json(_ref("Catalog"), "catalog"), **_errors(400, 401, 413, 429)},
                }
            },
            "/fed/v1/trades": {
                "post": {
                    "operationId": "trade",
                    "summary": "An idempotent trade request",
                    "security": SIGNED_SESSION,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("TradeRequest")}},
                    },
                    "responses": {
                        "200": _json(
                            {"type": "object"}, "the trade handler's answer (stored; replays get it again)"
                        ),
                        "201": _json({"type": "object"}, "the trade handler's answer, created"),
                        **_errors(400, 401, 409, 413, 422, 429, 503),
                    },
                }
            },
            "/fed/v1/trades/{trade_id}/settlement": {
                "post": {
                    "operationId": "settleTrade",
                    "summary": "Settle (or with used_hours 0 cancel) a trade the caller bought; idempotent",
                    "security": SIGNED_SESSION,
                    "parameters": [
                        {
                            "name": "trade_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 100},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SettlementDocument")}},
                    },
                    "responses": {
                        "200": _json(
                            {"type": "object"}, "the signed settlement receipt (a repeat gets the same one)"
                        ),
                        **_errors(400, 401, 404, 409, 413, 422, 429, 503),
                    },
                }
            },
            "/fed/v1/ledger/summary": {
                "post": {
                    "operationId": "ledgerSummary",
                    "summary": "This node's signed reconciliation summary for the caller and a window",
                    "security": SIGNED_SESSION,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SummaryRequest")}},
                    },
                    "responses": {
                        "200": _json({"type": "object"}, "the signed summary (type cpnode.ledger.summary)"),
                        **_errors(400, 401, 413, 422, 429, 503),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "httpSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Signature",
                    "description": "RFC 9421 signature with Signature-Input and Content-Digest",
                },
                "session": {"type": "http", "scheme": "bearer", "bearerFormat": TOKEN_TYPE},
            },
            "schemas": {
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
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "issued_ts": _INT,
                        "expires_ts": _INT,
                        "offer_count": _INT,
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
            },
        },
    }
