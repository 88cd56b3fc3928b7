"""The peer side of a trade request: the protocol frame around the node's trade handler.

A trade request is a document the partner signs::

    {"type": "cpnode.trade-request.v1", "issuer": PARTNER, "audience": US, "trade_id": ID,
     "issued_ts": T, "items": [{"offer_id": ..., "units": N, "hours": H}, ...]}

The frame checks it (signature by the authenticated key, audience, item limits), makes it
idempotent — the first answer to a (partner, trade id) is stored and every later request with the
same id and the same content gets that stored answer, a different content is a 409 — and limits
how many trades one partner may have in flight (429 beyond). The limit and "one run per trade id"
hold across every replica of the node: a trade runs under a claim in the database (`claims`),
renewed while the handler runs and lapsing if its replica dies. What a trade *does* (reserve,
hold funds) is the node's `TradeHandler`; without one the node answers 503.

So that a trade costs the node one write transaction at each end, the node may write with the
claim and with the answer: its `TradeOpener`, asked before the claim, gives what to write in the
claim's transaction once the claim is taken (the handler finds it with `claimed_with`), and the
handler may leave writes for the answer's transaction (`write_with_answer`). Neither runs when the
trade is refused or answered from storage, nor when the handler fails (the claim is released).
An opener's write that is the whole trade (`claim_states.AnsweringWrite` returning
`claim_states.Answered`) stores the answer in the claim's transaction instead: one write
transaction for the trade, and the handler is not called.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Any

from federation import canonical, claim_states, claims, store
from federation.catalog import sha256_hex
from federation.documents import load_document, verify_document
from federation.errors import AuthError, ConflictError, DocumentError, FederationError
from federation.partners import Partner
from federation.service import Caller, FederationService

log = logging.getLogger("cpnode.federation.trades")
TRADE_REQUEST_TYPE = "cpnode.trade-request.v1"
# Per trade request being handled (the handler runs in the frame's task): what was written with
# its claim, and what its handler left to write with its answer.
_CLAIMED_WITH: contextvars.ContextVar[claim_states.ClaimWrite | None] = contextvars.ContextVar(
    "cpnode_trade_claimed_with", default=None
)
_AT_ANSWER: contextvars.ContextVar[list[claim_states.ClaimWrite] | None] = contextvars.ContextVar(
    "cpnode_trade_at_answer", default=None
)


def claimed_with() -> claim_states.ClaimWrite | None:
    """The trade opener's write that ran in the claim's transaction of the trade request being
    handled (what it recorded is on it); None when nothing was written with the claim."""
    return _CLAIMED_WITH.get()


def write_with_answer(write: claim_states.ClaimWrite) -> bool:
    """Have `write` run in the transaction that stores the answer of the trade request being handled;
    False outside a trade request's handler (the caller then writes it itself)."""
    pending = _AT_ANSWER.get()
    if pending is None:
        return False
    pending.append(write)
    return True


class TradingUnavailable(FederationError, code="trading_unavailable"):
    """This node has no trade handler wired in."""


def check_trade_request(document: dict[str, Any], node: str, partner: str, max_items: int) -> str:
    """Check a trade request's shape and addressing; return its trade id."""
    if document.get("type") != TRADE_REQUEST_TYPE:
        raise DocumentError("not a trade request", code="wrong_type")
    if document.get("issuer") != partner:
        raise DocumentError("trade request issuer is not the calling partner", code="wrong_issuer")
    if document.get("audience") != node:
        raise DocumentError("trade request is addressed to another node", code="wrong_audience")
    trade_id = document.get("trade_id")
    if not isinstance(trade_id, str) or not 1 <= len(trade_id) <= 100:
        raise DocumentError("trade_id must be a string of 1–100 characters")
    items = document.get("items")
    if not isinstance(items, list) or not items:
        raise DocumentError("items must be a non-empty list")
    if len(items) > max_items:
        raise DocumentError(f"trade request has {len(items)} items, limit {max_items}", code="too_many_items")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("offer_id"), str):
            raise DocumentError(f"items[{index}] needs a string offer_id")
        for name in ("units", "hours"):
            if type(item.get(name)) is not int or item[name] < 1:
                raise DocumentError(f"items[{index}].{name} must be a positive integer")
    return trade_id


async def handle_trade(service: FederationService, caller: Caller, body: bytes) -> tuple[int, bytes]:
    """Answer one trade request body from an authenticated caller: (HTTP status, response bytes).

    A nonce the caller's authentication left to this route (`Caller.nonce`) is claimed with the
    trade's claim, in one transaction; on any refusal before that, on its own, so a replayed request
    is refused as `replayed` whatever else is wrong with it."""
    partner = caller.partner.name
    try:
        document, payload = load_document(body)
        trade_id = check_trade_request(document, service.name, partner, service.settings.max_trade_items)
        verify_document(document, partner, {caller.kid: await service.caller_key(caller)}, payload)
    except Exception:
        await service.claim_deferred_nonce(caller)
        raise
    request_sha = sha256_hex(payload)
    handler = service.trade_handler
    if handler is None:
        await service.claim_deferred_nonce(caller)
        # Without a handler only stored answers can be given (claiming below answers them too,
        # without this extra read, when there is a handler).
        stored = await service.db(store.get_trade, partner, trade_id)
        if stored is None:
            raise TradingUnavailable("this node does not accept trades yet")
        if stored["request_sha256"] != request_sha:
            raise ConflictError(f"trade {trade_id!r} was already requested with different content")
        return int(stored["status"]), bytes(stored["response"])
    settings = service.settings
    try:
        opener = service.trade_opener
        opening = None if opener is None else await opener(caller.partner, document, request_sha)
        stored = await service.db(
            claims.claim_trade,
            partner,
            trade_id,
            request_sha,
            service.holder,
            service.clock(),
            settings.trade_claim_ttl_s,
            settings.max_trades_in_flight,
            caller.nonce,
            opening,
        )
    except Exception as exc:
        if caller.nonce is not None and isinstance(exc, AuthError) and exc.code == "replayed":
            service.nonce_claimed(caller.nonce, fresh=False)  # raises `replayed`
        await service.claim_deferred_nonce(caller)  # rolled back with the refused claim
        raise
    if caller.nonce is not None:
        service.nonce_claimed(caller.nonce, fresh=True)
    if stored is not None:  # answered before (a replay, or another request since), or by the opening
        answered = stored.get("answered")
        if isinstance(answered, claim_states.Answered):
            answered.committed()
        return int(stored["status"]), bytes(stored["response"])
    return await run_claimed(service, caller.partner, document, request_sha, opening)


async def run_claimed(
    service: FederationService,
    partner: Partner,
    document: dict[str, Any],
    request_sha: str,
    opening: claim_states.ClaimWrite | None,
) -> tuple[int, bytes]:
    """Run the node's handler on a trade whose claim this replica holds, renewing the claim
    meanwhile, and store its answer with the claim's end: the answer that stands (the first).
    The claim is released when the handler fails."""
    handler = service.trade_handler
    if handler is None:
        raise TradingUnavailable("this node does not accept trades yet")
    name, trade_id = partner.name, str(document["trade_id"])
    keeper = asyncio.create_task(_keep_claim(service, name, trade_id))
    at_answer: list[claim_states.ClaimWrite] = []
    tokens = _CLAIMED_WITH.set(opening), _AT_ANSWER.set(at_answer)
    try:
        status, answer = await handler(partner, document)
        response = canonical.encode(answer)
    except BaseException:
        # Free the trade for a retry now rather than when the claim lapses; shielded so a
        # cancelled request still releases it.
        with contextlib.suppress(Exception):
            await asyncio.shield(service.db(claims.release_claim, name, trade_id, service.holder))
        raise
    finally:
        keeper.cancel()
        _CLAIMED_WITH.reset(tokens[0])
        _AT_ANSWER.reset(tokens[1])
    final_status, final_response = await service.db(
        claims.finish_trade,
        name,
        trade_id,
        request_sha,
        service.holder,
        status,
        response,
        service.clock(),
        at_answer,
    )
    return int(final_status), bytes(final_response)


async def _keep_claim(service: FederationService, partner: str, trade_id: str) -> None:
    """Renew this replica's claim on a running trade every third of its lifetime."""
    ttl_s = service.settings.trade_claim_ttl_s
    while True:
        await asyncio.sleep(ttl_s / 3)
        try:
            ours = await service.db(
                claims.renew_claim, partner, trade_id, service.holder, service.clock() + ttl_s
            )
        except Exception as exc:  # the database may be briefly away; the claim lasts until its expiry
            log.warning("could not renew the claim on trade %s of %s: %s", trade_id, partner, exc)
            continue
        if not ours:
            log.warning("the claim on trade %s of %s lapsed and was taken over", trade_id, partner)
            return
