"""Trade batches: several trade requests of one partner in one signed HTTP exchange.

A partner with many orders in flight for us sends their trade requests together, like a group
commit: `POST /fed/v1/trades/batch` with the body::

    {"type": "cpnode.trade-batch.v1", "requests": [TRADE_REQUEST, ...]}

Each item is a whole trade request, signed by the partner on its own, exactly as `POST
/fed/v1/trades` takes it (federation.trades): the batch only shares the HTTP exchange, its
signature, the session check and one write transaction. The answer is::

    {"type": "cpnode.trade-batch-answer.v1", "answers": [{"status": S, "body": ANSWER}, ...]}

one per item, in order, each what `POST /fed/v1/trades` would have answered for that request
alone (the signed acceptance or refusal, or an error `{"error", "message"}` with its status), so
evidence, idempotency and replays are per trade as before. The rules:

- The envelope is checked first: a body over the request limit is 413, one that is not canonical
  JSON, not this type, or with no or more than `MAX_BATCH_TRADES` requests is 400 for the whole
  batch, and nothing is stored.
- Items are independent: a bad item (not a trade request, another issuer or audience, a bad
  signature) is answered with its error; the others go on. Claims are taken in one write
  transaction, each in a savepoint of its own (`claims.claim_trades`), so one trade's refusal
  or failure rolls back only itself.
- A trade id twice in one batch: the later item gets the earlier one's answer, as a retry
  would (or 409 when its content differs).
- The batch's signature nonce is claimed in the claims' transaction (on its own when the batch is
  refused before); a replayed batch is 401 `replayed` and changes nothing.
- A node that does not take batches answers 404; the partner then sends its trades one by one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from federation import canonical, claim_states, claims
from federation.catalog import sha256_hex
from federation.documents import signing_bytes, verify_document
from federation.errors import (
    AuthError,
    ConflictError,
    DocumentError,
    FederationError,
    NotFoundError,
    RateLimitedError,
    SignatureError,
    TooLargeError,
)
from federation.service import Caller, FederationService
from federation.trades import TradingUnavailable, check_trade_request, run_claimed

log = logging.getLogger("cpnode.federation.trades")
BATCH_TYPE = "cpnode.trade-batch.v1"
BATCH_ANSWER_TYPE = "cpnode.trade-batch-answer.v1"
BATCH_PATH = "/fed/v1/trades/batch"
MAX_BATCH_TRADES = 64
# Statuses of the errors an item may be answered with (the node's edge has the same table for
# whole requests); anything else is an internal error (500), which the partner retries.
_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (TooLargeError, 413),
    (AuthError, 401),
    (SignatureError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (RateLimitedError, 429),
    (TradingUnavailable, 503),
    (FederationError, 400),
)


@dataclass
class _Item:
    """One request of a batch on its way through: what is known of it, and its answer once given."""

    document: dict[str, Any] | None = None
    trade_id: str = ""
    request_sha: str = ""
    opening: claim_states.ClaimWrite | None = None
    answer: tuple[int, bytes] | None = None
    same_as: int | None = None  # an earlier item of the batch with the same trade id


def error_answer(exc: BaseException) -> tuple[int, bytes]:
    """The status and `{"error", "message"}` body an item is answered with for `exc`."""
    own = getattr(exc, "http_status", None)
    status = own if isinstance(own, int) else next((s for cls, s in _STATUSES if isinstance(exc, cls)), 500)
    code = getattr(exc, "code", None)
    if status == 500 or not isinstance(code, str):
        log.error("a trade of a batch failed", exc_info=exc)
        return 500, canonical.encode({"error": "internal", "message": "internal error; see the node log"})
    return status, canonical.encode({"error": code, "message": str(exc)})


def check_batch(data: Any) -> list[Any]:
    """The requests of a batch envelope; DocumentError (400) when it is not one."""
    if not isinstance(data, dict) or data.get("type") != BATCH_TYPE:
        raise DocumentError("not a trade batch", code="wrong_type")
    if set(data) != {"type", "requests"}:
        raise DocumentError("a trade batch has exactly the members type and requests", code="bad_batch")
    requests = data["requests"]
    if not isinstance(requests, list) or not requests:
        raise DocumentError("requests must be a non-empty list", code="bad_batch")
    if len(requests) > MAX_BATCH_TRADES:
        raise DocumentError(
            f"trade batch has {len(requests)} requests, limit {MAX_BATCH_TRADES}", code="too_many_trades"
        )
    return requests


def encode_answers(answers: list[tuple[int, bytes]]) -> bytes:
    """The batch answer's canonical bytes, built around each answer's stored canonical bytes (keys
    in canonical order: `answers` before `type`, `body` before `status`)."""
    parts = [b'{"body":' + body + b',"status":' + str(status).encode() + b"}" for status, body in answers]
    return b'{"answers":[' + b",".join(parts) + b'],"type":"' + BATCH_ANSWER_TYPE.encode() + b'"}'


async def _open(service: FederationService, caller: Caller, raw: Any, item: _Item) -> None:
    """Check one request of the batch and ask the node's opener about it (its answer on refusal)."""
    try:
        if not isinstance(raw, dict):
            raise DocumentError("a batch's request must be a trade request object", code="wrong_type")
        payload = signing_bytes(raw)
        name = caller.partner.name
        item.trade_id = check_trade_request(raw, service.name, name, service.settings.max_trade_items)
        verify_document(raw, name, {caller.kid: caller.key}, payload)
        item.document, item.request_sha = raw, sha256_hex(payload)
        opener = service.trade_opener
        item.opening = None if opener is None else await opener(caller.partner, raw, item.request_sha)
    except Exception as exc:
        item.answer = error_answer(exc)


async def _run(service: FederationService, caller: Caller, item: _Item) -> tuple[int, bytes]:
    assert item.document is not None
    try:
        return await run_claimed(service, caller.partner, item.document, item.request_sha, item.opening)
    except Exception as exc:
        return error_answer(exc)


def _first_of_each(items: list[_Item]) -> list[int]:
    """The indexes of the items to claim: each trade id's first item not answered yet (a later item
    with the same id is marked `same_as` the first)."""
    first: dict[str, int] = {}
    to_claim: list[int] = []
    for index, item in enumerate(items):
        if item.answer is not None:
            continue
        earlier = first.setdefault(item.trade_id, index)
        if earlier != index:
            item.same_as = earlier
        else:
            to_claim.append(index)
    return to_claim


def _answer_of(item: _Item, items: list[_Item]) -> tuple[int, bytes]:
    """An item's answer; a repeated trade id's is its first item's, as a retry gets (409 when the
    content differs)."""
    if item.same_as is not None:
        original = items[item.same_as]
        if original.request_sha != item.request_sha:
            return error_answer(
                ConflictError(f"trade {item.trade_id!r} was already requested with different content")
            )
        item.answer = original.answer
    assert item.answer is not None
    return item.answer


async def handle_trade_batch(service: FederationService, caller: Caller, body: bytes) -> bytes:
    """Answer a trade batch body from an authenticated caller. A nonce its authentication left to
    this route (`Caller.nonce`) is claimed in the claims' transaction; on a refusal before that,
    on its own, so a replayed batch is refused as `replayed` whatever else is wrong with it."""
    try:
        if service.trade_handler is None:
            raise TradingUnavailable("this node does not accept trades yet")
        requests = check_batch(canonical.decode(body))
    except Exception:
        await service.claim_deferred_nonce(caller)
        raise
    items = [_Item() for _ in requests]
    await asyncio.gather(
        *(_open(service, caller, raw, item) for raw, item in zip(requests, items, strict=True))
    )
    to_claim = _first_of_each(items)
    settings = service.settings
    try:
        claimed = await service.db(
            claims.claim_trades,
            caller.partner.name,
            [claims.BatchClaim(items[i].trade_id, items[i].request_sha, items[i].opening) for i in to_claim],
            service.holder,
            service.clock(),
            settings.trade_claim_ttl_s,
            settings.max_trades_in_flight,
            caller.nonce,
        )
    except Exception as exc:
        if caller.nonce is not None and isinstance(exc, AuthError) and exc.code == "replayed":
            service.nonce_claimed(caller.nonce, fresh=False)  # raises `replayed`
        await service.claim_deferred_nonce(caller)  # rolled back with the claims
        raise
    if caller.nonce is not None:
        service.nonce_claimed(caller.nonce, fresh=True)
    running: list[tuple[_Item, asyncio.Task[tuple[int, bytes]]]] = []
    for index, result in zip(to_claim, claimed, strict=True):
        item = items[index]
        if isinstance(result, Exception):
            item.answer = error_answer(result)
        elif result is None:  # claimed: the node's handler decides it
            running.append((item, asyncio.create_task(_run(service, caller, item))))
        else:
            answered = result.get("answered")
            if isinstance(answered, claim_states.Answered):
                answered.committed()
            item.answer = int(result["status"]), bytes(result["response"])
    for item, task in running:
        item.answer = await task
    answers = [_answer_of(item, items) for item in items]
    return encode_answers(answers)
