"""Orders placed on a demand's best match, through the trading buyer (`Buyer.place`).

Without `split`: the ranked matches are tried in order, at most `MAX_ATTEMPTS`, moving on only
when an offer refuses for a reason another offer could avoid (`RETRY_CODES`); every offer tried is
reported. With `split`: one order per part of the plan; if a part is refused, the parts placed
before it are cancelled, so a consumer never keeps half a decomposition.

Request ids: with one, the n-th order placed for it (an attempt, or a part) gets an id derived
from the consumer, the request id and n, so the same request again finds the orders it placed
(`replayed`) instead of matching and placing anew; without one, every order gets a fresh id.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from node.market.demand import Demand
from node.market.errors import NoMatchError, PlanFailedError
from node.market.matching import MatchResult
from node.trading import rules, store
from node.trading.buyer import Buyer
from node.trading.errors import RefusedError, TradingError, UnknownError
from node.trading.store import Order
from node.trading.views import order_view

MAX_ATTEMPTS = 3
# Refusals another offer could avoid; the refused order is over and its money released.
RETRY_CODES = frozenset({"price_changed", "not_enough_free_units", "unknown_offer", "bad_partner_answer"})


def order_id_for(node: str, consumer: str, request_id: str | None, n: int) -> str:
    """The id of the n-th order of a request: derived from the request id, fresh without one."""
    if request_id is None:
        return rules.new_trade_id(node)
    seed = f"{consumer}\n{request_id}\n{n}".encode()
    return f"{node}.{hashlib.sha256(seed).hexdigest()[:32]}"


async def replayed(buyer: Buyer, demand: Demand, consumer: str, request_id: str) -> dict[str, Any] | None:
    """The answer to a request placed before (its orders as they are now), None if it is new."""
    found: list[Order] = []
    n = 0
    # Without split up to MAX_ATTEMPTS ids are used, with gaps where an offer was refused before an
    # order was stored; with split, parts are stored in turn, so the first missing id ends them.
    while n < MAX_ATTEMPTS or demand.split:
        order = await buyer.trading.db(
            store.get_order, order_id_for(buyer.trading.name, consumer, request_id, n)
        )
        if order is not None:
            found.append(order)
        elif demand.split:
            break
        n += 1
    if not found:
        return None
    return {"orders": [order_view(o) for o in found], "tried": [], "split": demand.split, "replayed": True}


def _tried(source: str, offer_id: str, order_id: str, outcome: str, message: str = "") -> dict[str, str]:
    return {
        "source": source,
        "offer_id": offer_id,
        "order_id": order_id,
        "outcome": outcome,
        "message": message,
    }


def no_match(result: MatchResult) -> NoMatchError:
    """The error for a demand no offer satisfies, with the exclusions counted by reason."""
    reasons = dict(Counter(e.reason for e in result.excluded))
    if result.demand.split and result.matches:
        free = sum(m.free_units for m in result.matches)
        message = f"the {len(result.matches)} matching offers have {free} free units, fewer than {result.demand.units}"
    else:
        message = f"no offer satisfies the demand ({len(result.excluded)} excluded)"
    return NoMatchError(message, excluded_by_reason=reasons)


async def place_best(
    buyer: Buyer,
    result: MatchResult,
    consumer: str,
    request_id: str | None,
    task: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Order the demand on its best match (or its split plan); the orders and every offer tried.
    `task`: the task document a partner's trade carries (orders of own offers carry none)."""
    if result.demand.split:
        return await _place_plan(buyer, result, consumer, request_id)
    demand, node = result.demand, buyer.trading.name
    tried: list[dict[str, str]] = []
    last: TradingError | None = None
    for n, candidate in enumerate(result.matches[:MAX_ATTEMPTS]):
        order_id = order_id_for(node, consumer, request_id, n)
        try:
            carried = task if candidate.source.startswith("partner:") else None
            order = await buyer.place(
                consumer, candidate.offer_id, candidate.source, demand.units, demand.hours, order_id, carried
            )
        except (RefusedError, UnknownError) as exc:
            tried.append(_tried(candidate.source, candidate.offer_id, order_id, exc.code, str(exc)))
            if exc.code not in RETRY_CODES:
                exc.details["tried"] = tried
                raise
            last = exc
            continue
        tried.append(_tried(candidate.source, candidate.offer_id, order.id, "accepted"))
        return {"orders": [order_view(order)], "tried": tried, "split": False, "replayed": False}
    if last is None:
        raise no_match(result)
    last.details["tried"] = tried
    raise last


async def _place_plan(
    buyer: Buyer, result: MatchResult, consumer: str, request_id: str | None
) -> dict[str, Any]:
    demand, node = result.demand, buyer.trading.name
    if not result.plan:
        raise no_match(result)
    placed: list[Order] = []
    tried: list[dict[str, str]] = []
    for index, part in enumerate(result.plan, 1):
        order_id = order_id_for(node, consumer, request_id, index - 1)
        try:
            order = await buyer.place(
                consumer, part.offer_id, part.source, part.units, demand.hours, order_id
            )
        except TradingError as exc:
            tried.append(_tried(part.source, part.offer_id, order_id, exc.code, str(exc)))
            cancelled, kept = await _cancel_all(buyer, [o.id for o in placed])
            note = f"the {len(cancelled)} part(s) placed before were cancelled"
            if kept:
                note += f"; {', '.join(kept)} could not be cancelled now and stay for `cpnode orders cancel`"
            raise PlanFailedError(
                f"part {index} of {len(result.plan)} ({part.offer_id} from {part.source}) was refused: "
                f"{exc.code}: {exc}; {note}",
                refused=exc.code,
                cancelled=cancelled,
                not_cancelled=kept,
                tried=tried,
            ) from exc
        placed.append(order)
        tried.append(_tried(part.source, part.offer_id, order.id, "accepted"))
    return {"orders": [order_view(o) for o in placed], "tried": tried, "split": True, "replayed": False}


async def _cancel_all(buyer: Buyer, order_ids: list[str]) -> tuple[list[str], list[str]]:
    cancelled, kept = [], []
    for order_id in order_ids:
        try:
            await buyer.cancel(order_id)
            cancelled.append(order_id)
        except TradingError:
            kept.append(order_id)
    return cancelled, kept
