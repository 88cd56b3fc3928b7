"""Admin API of the ledger: accounts, transfer batches, one transfer, the latest signed checkpoint.

All routes need `Authorization: Bearer <admin token>`. A batch is parsed and checked whole before
anything is written; ledger errors carry their own 4xx/503 status and code (never a 500).

    GET  /api/v1/ledger/accounts[?id=A&id=B]   accounts with balances
    POST /api/v1/ledger/accounts               {"accounts": [{"id", "currency", "kind", ...}]}
    POST /api/v1/ledger/transfers              {"transfers": [{"id", "kind", ...}]} → results
    GET  /api/v1/ledger/transfers/{id}         one stored transfer
    GET  /api/v1/ledger/checkpoint             the latest signed checkpoint (text/plain)
    POST /api/v1/ledger/audits                 export a signed audit bundle of the whole log into
                                               the node's data folder (data/audits/UTC-TIME) and
                                               verify it at once with the node's public key alone
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

import ledger
from node.context import CTX
from node.db import in_thread
from node.http.body import read_json
from node.http.errors import ApiError, bad_request, not_found

MAX_BATCH = 10_000


async def _json_list(request: web.Request, key: str) -> list[Any]:
    data = await read_json(request)
    if not isinstance(data, dict) or set(data) != {key} or not isinstance(data[key], list):
        raise bad_request(f'body must be {{"{key}": [...]}}')
    if not 1 <= len(data[key]) <= MAX_BATCH:
        raise bad_request(f"{key}: between 1 and {MAX_BATCH} items", code="too_many_items")
    items: list[Any] = data[key]
    if not all(isinstance(item, dict) for item in items):
        raise bad_request(f"{key}: every item must be an object")
    return items


def _account_spec(index: int, raw: dict[str, Any]) -> ledger.AccountSpec:
    allowed = {
        "id",
        "currency",
        "kind",
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "partner",
    }
    unknown = sorted(set(raw) - allowed)
    if unknown or not {"id", "currency", "kind"} <= set(raw):
        raise bad_request(
            f"accounts[{index}]: needs id, currency and kind; unknown: {', '.join(unknown) or '-'}"
        )
    try:
        kind = ledger.AccountKind(raw["kind"])
    except ValueError:
        raise bad_request(
            f"accounts[{index}].kind: one of {', '.join(k.value for k in ledger.AccountKind)}"
        ) from None
    return ledger.AccountSpec(**{**raw, "kind": kind})


async def list_accounts(request: web.Request) -> web.Response:
    """`GET /api/v1/ledger/accounts`."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    ids = request.query.getall("id", []) or None
    accounts = await in_thread(ctx.engine, ledger.list_accounts, ids)
    return web.json_response({"accounts": [a.to_dict() for a in accounts]})


async def create_accounts(request: web.Request) -> web.Response:
    """`POST /api/v1/ledger/accounts`: idempotent; one result per account."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    specs = [_account_spec(i, raw) for i, raw in enumerate(await _json_list(request, "accounts"))]
    results = await in_thread(ctx.engine, ledger.create_accounts, specs)
    return web.json_response({"results": [r.to_dict() for r in results]})


async def submit_transfers(request: web.Request) -> web.Response:
    """`POST /api/v1/ledger/transfers`: the batch is applied whole; one result per transfer."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    requests = []
    for index, raw in enumerate(await _json_list(request, "transfers")):
        try:
            requests.append(ledger.TransferRequest.from_dict(raw))
        except (TypeError, ValueError) as exc:
            raise bad_request(f"transfers[{index}]: {exc}", code="invalid_request") from None
    # Concurrent requests share transactions (group commit), each answered as if submitted alone.
    results = await ledger.submit_grouped_async(ctx.engine, requests)
    return web.json_response({"results": [r.to_dict() for r in results]})


async def get_transfer(request: web.Request) -> web.Response:
    """`GET /api/v1/ledger/transfers/{id}`."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    transfer_id = request.match_info["id"]
    transfer = await in_thread(ctx.engine, ledger.get_transfer, transfer_id)
    if transfer is None:
        failure = await in_thread(ctx.engine, ledger.get_failure, transfer_id)
        if failure is not None:
            raise ApiError(
                404, "transfer_failed", f"transfer {transfer_id!r} failed: {failure[0]}", field=failure[1]
            )
        raise not_found(f"no transfer {transfer_id!r}")
    return web.json_response(transfer.to_dict())


async def checkpoint(request: web.Request) -> web.Response:
    """`GET /api/v1/ledger/checkpoint`: the latest signed note."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    stored = await in_thread(ctx.engine, ledger.current_checkpoint)
    if stored is None:
        raise not_found("no checkpoint has been signed yet", code="no_checkpoint")
    return web.Response(text=stored.note, content_type="text/plain")


async def export_audit(request: web.Request) -> web.Response:
    """`POST /api/v1/ledger/audits`: export the whole log as a signed bundle and verify it offline
    (201 with where it is, its range, and the verification report)."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{secrets.token_hex(3)}"
    directory = ctx.settings.data_dir / "audits" / stamp

    def export_and_verify() -> dict[str, Any]:
        directory.parent.mkdir(parents=True, exist_ok=True)
        origin = ledger.origin_for(ctx.identity.name)
        result = ledger.export_bundle(ctx.engine, directory, ctx.identity.signing_key, origin)
        report = ledger.verify_bundle(directory, ctx.identity.signing_key.verify_key)
        return {**result.to_dict(), "verified": True, "report": report.to_dict()}

    try:
        answer = await in_thread(ctx.engine, lambda _engine: export_and_verify())
    except ledger.AuditError as exc:
        raise ApiError(422, "audit_failed", f"the exported bundle did not verify: {exc}") from None
    return web.json_response(answer, status=201)


def add_routes(app: web.Application) -> None:
    """Mount the ledger's admin API."""
    app.router.add_get("/api/v1/ledger/accounts", list_accounts)
    app.router.add_post("/api/v1/ledger/accounts", create_accounts)
    app.router.add_post("/api/v1/ledger/transfers", submit_transfers)
    app.router.add_get("/api/v1/ledger/transfers/{id}", get_transfer)
    app.router.add_get("/api/v1/ledger/checkpoint", checkpoint)
    app.router.add_post("/api/v1/ledger/audits", export_audit)
