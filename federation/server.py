"""The peer API under `/fed/v1` (aiohttp handlers). Each handler reads the body within limits,
authenticates the caller through the service and translates its answer; errors carry
a `code` and are rendered by the node's error middleware with the status its table gives.

Routes (the key document `/fed/v1/keys` is served by the node's core routes):
- `GET  /fed/v1/openapi.json`   this API's OpenAPI document (unsigned)
- `POST /fed/v1/login/challenge` signed; a single-use login challenge
- `POST /fed/v1/login`           signed; login document in, session token out
- `GET  /fed/v1/catalog/head`    signed + session; version, hash and expiry of the caller's catalog
- `GET  /fed/v1/catalog`         signed + session; the caller's signed catalog
- `GET  /fed/v1/relayed?since=N` signed + session; the feed of partners' re-publishable catalogs
  the caller may fetch through us (`federation.relay`)
- `GET  /fed/v1/relayed/{issuer}` signed + session; one of them, byte for byte as its issuer signed it
- `POST /fed/v1/trades`          signed + session; an idempotent trade request
- `POST /fed/v1/trades/batch`    signed + session; several trade requests, each answered as alone
  (`federation.trade_batches`); 404 unless the node takes batches (`TRADE_BATCHES`)
- `POST /fed/v1/trades/{trade_id}/settlement` signed + session; settle or cancel a trade
- `POST /fed/v1/ledger/summary`  signed + session; this node's signed reconciliation summary

The task routes `/fed/v1/tasks/{trade_id}[/logs|/outputs/{path}|/stop]` are the node's own
(node.tasks.peer_routes), authenticated through this service the same way; the OpenAPI document
lists them with the rest.

What settlements and summary requests do is the node's (`PEER_HANDLERS` on the app, see
`federation.settlement`); without them those routes answer 503.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation import canonical, store
from federation.documents import load_document
from federation.errors import AuthError, DocumentError, NotFoundError, TooLargeError
from federation.login import check_login, new_challenge
from federation.openapi import openapi_document
from federation.partners import Agreement, check_node_name
from federation.relay import FEED_PAGE, feed_json
from federation.service import Caller, FederationService
from federation.settlement import PeerHandlers, handle_settlement, handle_summary
from federation.tokens import issue_token
from federation.trade_batches import handle_trade_batch
from federation.trades import handle_trade

SERVICE = web.AppKey("federation_service", FederationService)
PEER_HANDLERS = web.AppKey("federation_peer_handlers", PeerHandlers)
# Whether this node takes trade batches (set by the node's trading); without it the batch route
# answers 404, as a node from before batches does.
TRADE_BATCHES = web.AppKey("federation_trade_batches", bool)
JSON = "application/json"


def json_response(data: Any, status: int = 200) -> web.Response:
    """A canonical-JSON response."""
    return web.Response(body=canonical.encode(data), status=status, content_type=JSON)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, refusing (413) anything over `limit` bytes before parsing it.

    A declared Content-Length over the limit is refused before reading; a chunked body is refused
    as soon as what has arrived passes the limit. The body is read to its end, however many
    writes the peer split it into, so a signed body is never checked against a prefix of itself.
    """
    if request.content_length is not None and request.content_length > limit:
        raise TooLargeError(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _caller(
    request: web.Request, body: bytes, require_session: bool, defer_nonce: bool = False
) -> Caller:
    service = request.app[SERVICE]
    return await service.authenticate(
        request.method,
        request.raw_path,
        list(request.headers.items()),
        body,
        require_session,
        defer_nonce,
    )


async def openapi(_request: web.Request) -> web.Response:
    """The OpenAPI document of `/fed/v1`."""
    return json_response(openapi_document())


async def login_challenge(request: web.Request) -> web.Response:
    """Issue a single-use challenge to the signing partner."""
    service = request.app[SERVICE]
    body = await read_body(request, service.settings.max_request_bytes)
    caller = await _caller(request, body, require_session=False)
    challenge = new_challenge(service.name, caller.partner.name, service.clock())
    await service.db(store.store_challenge, challenge, service.clock())
    return json_response(challenge.to_json())


async def login(request: web.Request) -> web.Response:
    """Check a signed login document against its challenge and answer with a session token."""
    service = request.app[SERVICE]
    body = await read_body(request, service.settings.max_request_bytes)
    caller = await _caller(request, body, require_session=False)
    document, payload = load_document(body)
    value = document.get("challenge")
    stored = await service.db(store.load_challenge, value) if isinstance(value, str) else None
    key = await service.caller_key(caller)
    now = service.clock()
    kid = check_login(document, payload, service.name, caller.partner.name, {caller.kid: key}, stored, now)
    if stored is None:  # check_login raises first; this keeps the type checker informed
        raise AuthError("unknown login challenge", code="bad_challenge")
    await service.db(store.consume_challenge, stored)
    token, expires_ts = issue_token(service.identity(), caller.partner.name, kid, now)
    return json_response(
        {"token": token, "token_type": "Bearer", "expires_ts": expires_ts, "node": service.name}
    )


async def catalog_head(request: web.Request) -> web.Response:
    """Version, hash and expiry of the catalog made for the caller (and the relay feed's newest
    position when the caller may fetch partners' catalogs through us)."""
    service = request.app[SERVICE]
    caller = await _caller(request, await read_body(request, 0), require_session=True)
    issued = await service.catalog_for(caller.partner)
    head = issued.head
    answer = {
        "issuer": service.name,
        "audience": caller.partner.name,
        "version": head.version,
        "sha256": head.sha256,
        "issued_ts": head.issued_ts,
        "expires_ts": head.expires_ts,
        "offer_count": issued.offer_count,
    }
    agreement = caller.partner.agreement
    if agreement.relay:
        answer["relay_seq"] = await service.db(
            store.relay_position, _relay_scope(agreement), caller.partner.name, service.clock()
        )
    return json_response(answer)


def _relay_scope(agreement: Agreement) -> tuple[str, ...] | None:
    """The issuers a partner may fetch through us: None for all."""
    if not agreement.relay:
        raise NotFoundError("this node relays no catalogs to you", code="relay_not_allowed")
    return None if "*" in agreement.relay else agreement.relay


async def relayed_feed(request: web.Request) -> web.Response:
    """The feed of re-publishable partner catalogs the caller may fetch, after position `since`."""
    service = request.app[SERVICE]
    caller = await _caller(request, await read_body(request, 0), require_session=True)
    text = request.query.get("since", "0")
    if not text.isdigit() or len(text) > 15:
        raise DocumentError("since must be a non-negative integer", code="bad_query")
    scope, audience, now = _relay_scope(caller.partner.agreement), caller.partner.name, service.clock()
    entries = await service.db(store.relay_feed, scope, audience, int(text), now, FEED_PAGE)
    position = await service.db(store.relay_position, scope, audience, now)
    return json_response(feed_json(service.name, audience, entries, position))


async def relayed_catalog(request: web.Request) -> web.Response:
    """One partner's re-publishable catalog, byte for byte as its issuer signed it for us."""
    service = request.app[SERVICE]
    caller = await _caller(request, await read_body(request, 0), require_session=True)
    issuer = check_node_name(request.match_info["issuer"])
    agreement = caller.partner.agreement
    scope = _relay_scope(agreement)
    body = None
    if scope is None or issuer in scope:
        body = await service.db(store.relayable_body, issuer, caller.partner.name, service.clock())
    if body is None:
        raise NotFoundError(f"no catalog of {issuer!r} to relay to you", code="not_found")
    return web.Response(body=body, content_type=JSON)


async def catalog(request: web.Request) -> web.Response:
    """The signed catalog made for the caller, byte for byte as stored."""
    service = request.app[SERVICE]
    caller = await _caller(request, await read_body(request, 0), require_session=True)
    issued = await service.catalog_for(caller.partner)
    return web.Response(body=issued.body, content_type=JSON, headers={"ETag": f'"{issued.head.sha256}"'})


async def trades(request: web.Request) -> web.Response:
    """An idempotent trade request from the caller."""
    service = request.app[SERVICE]
    body = await read_body(request, service.settings.max_request_bytes)
    # The nonce is claimed by `handle_trade` in the trade claim's transaction.
    caller = await _caller(request, body, require_session=True, defer_nonce=True)
    status, response = await handle_trade(service, caller, body)
    return web.Response(body=response, status=status, content_type=JSON)


async def trade_batch(request: web.Request) -> web.Response:
    """Several trade requests from the caller, each answered as if alone."""
    service = request.app[SERVICE]
    if not request.app.get(TRADE_BATCHES, False):
        raise NotFoundError("this node takes trade requests one by one", code="not_found")
    body = await read_body(request, service.settings.max_request_bytes)
    # The nonce is claimed by `handle_trade_batch` in the claims' transaction.
    caller = await _caller(request, body, require_session=True, defer_nonce=True)
    response = await handle_trade_batch(service, caller, body)
    return web.Response(body=response, content_type=JSON)


async def settlement(request: web.Request) -> web.Response:
    """Settle or cancel a trade the caller bought here."""
    service = request.app[SERVICE]
    body = await read_body(request, service.settings.max_request_bytes)
    caller = await _caller(request, body, require_session=True)
    status, response = await handle_settlement(
        service, request.app.get(PEER_HANDLERS), caller, request.match_info["trade_id"], body
    )
    return web.Response(body=response, status=status, content_type=JSON)


async def summary(request: web.Request) -> web.Response:
    """This node's signed reconciliation summary for the caller and the requested window."""
    service = request.app[SERVICE]
    body = await read_body(request, service.settings.max_request_bytes)
    caller = await _caller(request, body, require_session=True)
    response = await handle_summary(service, request.app.get(PEER_HANDLERS), caller, body)
    return web.Response(body=response, content_type=JSON)


def add_routes(app: web.Application, service: FederationService) -> None:
    """Mount the `/fed/v1` peer API (all but the key document) on `app`."""
    app[SERVICE] = service
    app.router.add_get("/fed/v1/openapi.json", openapi)
    app.router.add_post("/fed/v1/login/challenge", login_challenge)
    app.router.add_post("/fed/v1/login", login)
    app.router.add_get("/fed/v1/catalog/head", catalog_head)
    app.router.add_get("/fed/v1/catalog", catalog)
    app.router.add_get("/fed/v1/relayed", relayed_feed)
    app.router.add_get("/fed/v1/relayed/{issuer}", relayed_catalog)
    app.router.add_post("/fed/v1/trades", trades)
    app.router.add_post("/fed/v1/trades/batch", trade_batch)
    app.router.add_post("/fed/v1/trades/{trade_id}/settlement", settlement)
    app.router.add_post("/fed/v1/ledger/summary", summary)
