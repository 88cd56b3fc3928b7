"""The OpenAPI 3.1 document of the peer API `/fed/v1`, served at `/fed/v1/openapi.json`.

Tests validate real responses against it and run schemathesis over it, so it states every status
a route can answer with.
"""

from __future__ import annotations

from typing import Any

from federation.openapi_schemas import REF, schemas
from federation.tokens import TOKEN_TYPE


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


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


SIGNED: list[dict[str, list[str]]] = [{"httpSignature": []}]
SIGNED_SESSION: list[dict[str, list[str]]] = [{"httpSignature": [], "session": []}]
_SLICE_INT = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
_TRADE_ID = {
    "name": "trade_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 100},
}
_SLICE = [
    {"name": name, "in": "query", "required": False, "schema": _SLICE_INT} for name in ("offset", "limit")
]


def _task_paths() -> dict[str, Any]:
    """The routes on which a seller answers about the task of a trade the caller bought (served by
    the node's tasks component)."""
    status = _json({"type": "object"}, "the signed task status (type cpnode.task-status.v1)")
    errors = _errors(400, 401, 404, 413, 429, 503)
    return {
        "/fed/v1/tasks/{trade_id}": {
            "get": {
                "operationId": "taskStatus",
                "summary": "The signed status of the task of a trade the caller bought, with its usage record once metered",
                "security": SIGNED_SESSION,
                "parameters": [_TRADE_ID],
                "responses": {"200": status, **errors},
            }
        },
        "/fed/v1/tasks/{trade_id}/logs": {
            "get": {
                "operationId": "taskLogs",
                "summary": "A slice of the task's log (offset, limit; data in base64)",
                "security": SIGNED_SESSION,
                "parameters": [_TRADE_ID, *_SLICE],
                "responses": {"200": _json({"type": "object"}, "the log slice"), **errors},
            }
        },
        "/fed/v1/tasks/{trade_id}/outputs/{path}": {
            "get": {
                "operationId": "taskOutput",
                "summary": "Bytes of a kept output file of the task (offset, limit)",
                "security": SIGNED_SESSION,
                "parameters": [
                    _TRADE_ID,
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                    *_SLICE,
                ],
                "responses": {
                    "200": {
                        "description": "the bytes",
                        "content": {
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **errors,
                },
            }
        },
        "/fed/v1/tasks/{trade_id}/stop": {
            "post": {
                "operationId": "stopTask",
                "summary": "Stop the task (again: no change); the signed status",
                "security": SIGNED_SESSION,
                "parameters": [_TRADE_ID],
                "responses": {"200": status, **_errors(400, 401, 404, 409, 413, 429, 503)},
            }
        },
    }


def _account_paths() -> dict[str, Any]:
    """The routes on which a consumer's home node and a partner tell each other of the consumer's
    account (served by the node's accounts component; federation.assertions has the documents)."""
    status = _json({"type": "object"}, "the signed account states (type cpnode.account-status/v1)")
    return {
        "/fed/v1/accounts/status": {
            "post": {
                "operationId": "accountStatus",
                "summary": "The caller tells this node of its consumers' account states (a signed status "
                "document for this node); how many changed status here",
                "security": SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": _json({"type": "object"}, "how many changed"), **_errors(400, 401, 413)},
            }
        },
        "/fed/v1/accounts/statuses": {
            "post": {
                "operationId": "accountStatuses",
                "summary": "The signed states of those of this node's consumers the caller has seen "
                '(body {"accounts": [consumer id, ...]})',
                "security": SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": status, **_errors(400, 401, 413)},
            }
        },
    }


def _supervision_paths() -> dict[str, Any]:
    """The routes between a node and its supervisors (served by the node's supervision component;
    the report intake only on a node run with the `supervisor` role, else 404)."""
    return {
        "/fed/v1/supervision/catalog": {
            "get": {
                "operationId": "supervisorCatalog",
                "summary": "The node's catalog of all its own offers, signed for the supervisor that asks",
                "security": SIGNED,
                "responses": {"200": _json(_ref("Catalog"), "catalog"), **_errors(400, 401, 413)},
            }
        },
        "/fed/v1/supervision/reports": {
            "post": {
                "operationId": "supervisionReport",
                "summary": "A registered node's signed report (type cpnode.supervision.report.v1); "
                "the same report again answers duplicate",
                "security": SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json({"type": "object"}, "accepted or duplicate, with the node, seq and sha256"),
                    **_errors(400, 401, 404, 409, 413),
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a JSON-ready dict."""
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
            "/fed/v1/relayed": {
                "get": {
                    "operationId": "relayFeed",
                    "summary": "Partners' re-publishable catalogs the caller may fetch through this node, "
                    "stored after feed position `since`",
                    "security": SIGNED_SESSION,
                    "parameters": [
                        {"name": "since", "in": "query", "required": False, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json(_ref("RelayFeed"), "feed"),
                        **_errors(400, 401, 404, 413, 429),
                    },
                }
            },
            "/fed/v1/relayed/{issuer}": {
                "get": {
                    "operationId": "relayedCatalog",
                    "summary": "One partner's re-publishable catalog, byte for byte as its issuer signed it",
                    "security": SIGNED_SESSION,
                    "parameters": [
                        {
                            "name": "issuer",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 63},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("Catalog"), "the issuer's catalog"),
                        **_errors(400, 401, 404, 413, 429),
                    },
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
            "/fed/v1/trades/batch": {
                "post": {
                    "operationId": "tradeBatch",
                    "summary": "Several trade requests in one exchange, each answered as if alone",
                    "security": SIGNED_SESSION,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("TradeBatch")}},
                    },
                    "responses": {
                        "200": _json(_ref("TradeBatchAnswer"), "one answer per request, in order"),
                        **_errors(400, 401, 404, 413, 503),
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
            **_task_paths(),
            **_supervision_paths(),
            **_account_paths(),
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
            "schemas": schemas(),
        },
    }
