"""The `submitted` action of a consumer's task: choose the offer and place the order.

The task names an offer, or states a demand that is matched like any other (node.market), with
two more rules: the offer must be one a task can run on (an offer of one of this node's pools,
hosted here, or a partner's offer: the trade then carries the task document and the partner runs
it, node.tasks.sold), and, for a task that names a framework,
the offer's chip must have an image of it (`no_framework_image`). The order goes through the
trading buyer as every order does (the consumer's hold, the reservation or the partner's trade).

Order ids derive from the task id and the ordering round, so running the action again after a
crash finds the order it placed instead of placing another. A task waits in `submitted` (detail
`waiting_for_capacity`) while every offer that fits is busy, and orders anew (next round) when
capacity frees; after `queue_timeout_s` it fails `no_capacity`. Any other refusal fails the task
with the refusal's code (`insufficient_funds`, `no_match`, `no_framework_image`, ...). A placement
cut off by its time bound (node.tasks.steps) finds its orders again the same way, and drives any
it left mid-way on to rest (accepted or ended) before using them; when placements were cut off
too often, `call_off` ends the orders of the round instead (holds voided, trades cancelled).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from connectors.frameworks import Image, NoImage, resolve
from node.market.demand import Demand
from node.market.errors import MarketError, NoMatchError
from node.market.matching import Exclusion, MatchResult, match
from node.market.ordering import order_id_for, place_best, replayed
from node.market.scheduled import Scheduler
from node.market.view import market_offers
from node.offers import OfferRow
from node.tasks.core import Tasks
from node.tasks.records import Task
from node.tasks.spec import TaskSpec, parse_task_spec
from node.trading import store as trading_store
from node.trading.errors import RefusedError, TradingError
from node.trading.machine import ORDER_RESTING
from node.trading.records import Order
from node.trading.views import order_view

if TYPE_CHECKING:
    from node.market.placement import Placement

WAITING = "waiting_for_capacity"
# Refusals that say "not now": the task waits and orders again when capacity frees.
WAIT_CODES = frozenset({"not_enough_free_units", "partner_unavailable"})


@dataclass(frozen=True)
class Placed:
    """The order a task got, and where it runs."""

    order: Order
    offer: OfferRow
    image: Image | None


class Refused(Exception):
    """The task cannot be ordered: `code` and a message (it fails with them)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Busy(Exception):
    """Every offer that fits is busy now: wait and order again (`ordered`: orders were placed and
    refused this round, so the next attempt takes new order ids)."""

    def __init__(self, message: str, ordered: bool = True) -> None:
        super().__init__(message)
        self.ordered = ordered


def image_for(spec: TaskSpec, chip: str) -> Image | None:
    """The framework image a task runs on `chip` (None for a fixed program); Refused if none fits."""
    if spec.framework is None:
        return None
    found = resolve(spec.framework, chip)
    if isinstance(found, NoImage):
        raise Refused("no_framework_image", found.message)
    return found


def task_document(task: Task) -> dict[str, Any]:
    """The task document a partner's trade carries (node.tasks.sold): the spec without resources,
    and the consumer it runs for (so that consumer may follow it at the partner by assertion)."""
    spec = {k: v for k, v in task.spec_data().items() if k != "resources"}
    document: dict[str, Any] = {"task_id": task.id, "spec": spec}
    if task.consumer is not None:
        document["consumer"] = task.consumer
    return document


def flavor_of(offer: OfferRow) -> tuple[str, str]:
    """(region, flavor) of an own offer of a pool (its id is `pool/region/flavor`)."""
    parts = str(offer["id"]).split("/")
    if len(parts) != 3:
        raise Refused("not_deliverable", f"offer {offer['id']} is not an offer of a pool this node hosts")
    return parts[1], parts[2]


class Ordering:
    """Places the orders of consumers' tasks."""

    def __init__(self, tasks: Tasks) -> None:
        self.tasks = tasks

    @cached_property
    def scheduler(self) -> Scheduler:
        """The market's scheduler (strategies, A/B split), built on first use."""
        return Scheduler(self.tasks.engine, self.tasks.offer_sources, self.tasks.currency)

    def deliverable(self, offer: OfferRow) -> str | None:
        """Why a task cannot run on `offer` (None if it can): a partner's offer is delivered by the
        partner; an own one needs a pool hosted here."""
        if offer.get("partner") is not None:
            return None
        host = self.tasks.host
        pool = str(offer.get("pool", ""))
        if host is None or pool not in {p.name for p in host.plugins() if p.kind == "compute"}:
            return f"pool {pool!r} is not a pool this node hosts (an offer from the config runs nothing)"
        if len(str(offer.get("id", "")).split("/")) != 3:
            return f"offer {offer.get('id')} names no flavor of its pool"
        return None

    async def offers(self) -> list[OfferRow]:
        """The merged offer view as matching sees it now."""
        t = self.tasks
        return await market_offers(t.offer_sources, t.engine, int(time.time()))

    async def place(self, task: Task) -> Placed:
        """Place (or find again) the task's order; Refused, or Busy to wait."""
        spec = parse_task_spec(task.spec_data())
        request_id = f"{task.id}/{task.order_round}"
        consumer = task.consumer
        assert consumer is not None
        rows = await self.offers()
        if spec.offer is not None:
            return await self._place_offer(task, spec, rows, request_id)
        assert spec.demand is not None
        demand = spec.demand.model_copy(update={"framework": spec.framework})
        before = await replayed(self.tasks.buyer, demand, consumer, request_id)
        if before is not None:
            return await self._found_again(spec, rows, await self._settled(before))
        try:
            result, placement = await self._ranked(demand, rows, consumer)
            answer = await place_best(self.tasks.buyer, result, consumer, request_id, task_document(task))
            if placement is not None:
                await self.scheduler.note(placement, consumer, answer)
        except NoMatchError as exc:
            reasons = {e.reason for e in result.excluded}
            if reasons and reasons <= {"not_enough_free_units"}:
                raise Busy(str(exc), ordered=False) from None
            counted = ", ".join(
                f"{n} {r}" for r, n in sorted(Counter(e.reason for e in result.excluded).items())
            )
            code = "no_framework_image" if reasons == {"no_framework_image"} else "no_match"
            raise Refused(code, f"{exc}: {counted}" if counted else str(exc)) from None
        except (TradingError, MarketError) as exc:
            raise self._refusal(exc) from None
        return await self._found_again(spec, rows, answer)

    async def _ranked(
        self, demand: Demand, rows: list[OfferRow], consumer: str
    ) -> tuple[MatchResult, Placement | None]:
        """The offers a task can run on, matched (or ranked by the demand's strategy)."""
        kept: list[OfferRow] = []
        left_out: list[Exclusion] = []
        for row in rows:
            why = self.deliverable(row)
            if why is None:
                kept.append(row)
            else:
                left_out.append(Exclusion(str(row.get("source")), str(row.get("id")), "not_deliverable", why))
        placement = None
        if demand.strategy is None:
            result = match(demand, kept, self.tasks.currency)
        else:
            placement = await self.scheduler.rank(demand, consumer, kept)
            result = placement.result()
        return MatchResult(
            result.demand, result.matches, (*result.excluded, *left_out), result.plan
        ), placement

    def _refusal(self, exc: TradingError | MarketError) -> Exception:
        if exc.code in WAIT_CODES:
            return Busy(str(exc))
        return Refused(exc.code, str(exc))

    async def _settled(self, answer: dict[str, Any]) -> dict[str, Any]:
        """A replayed answer with each order driven on to rest (accepted or ended): a placement cut
        off by its time bound may have left one mid-way."""
        buyer = self.tasks.buyer
        orders = []
        for view in answer["orders"]:
            if view["state"] not in ORDER_RESTING:
                view = order_view(await buyer.drive(await buyer.get(view["id"])))
            orders.append(view)
        return {**answer, "orders": orders}

    async def _found_again(self, spec: TaskSpec, rows: list[OfferRow], answer: dict[str, Any]) -> Placed:
        """The accepted order of a placement (or replay); Busy when the replayed ones all ended."""
        accepted = [o for o in answer["orders"] if o["state"] == "accepted"]
        if not accepted:
            raise Busy("the orders of this round ended without a sale; ordering again")
        view = accepted[0]
        order = await self.tasks.buyer.get(view["id"])
        offer = next((r for r in rows if r["id"] == order.offer_id and r["source"] == order.source), None)
        if offer is None:
            raise Refused("unknown_offer", f"offer {order.offer_id} left the offer view")
        return Placed(order, offer, image_for(spec, str(offer.get("chip_model", ""))))

    async def round_orders(self, task: Task) -> list[Order]:
        """The orders the task's current ordering round stored (none if it stored none)."""
        spec = parse_task_spec(task.spec_data())
        consumer = task.consumer
        assert consumer is not None
        request_id = f"{task.id}/{task.order_round}"
        if spec.offer is not None:
            order_id = order_id_for(self.tasks.name, consumer, request_id, 0)
            order = await self.tasks.db(trading_store.get_order, order_id)
            return [] if order is None else [order]
        assert spec.demand is not None
        demand = spec.demand.model_copy(update={"framework": spec.framework})
        before = await replayed(self.tasks.buyer, demand, consumer, request_id)
        return [] if before is None else [await self.tasks.buyer.get(v["id"]) for v in before["orders"]]

    async def call_off(self, task: Task, reason: str) -> list[Order]:
        """End every order of the task's current round without waiting for a seller's answer:
        holds voided, accepted trades cancelled, a trade request with no answer abandoned (its
        seller is told the trade is off, again later if it does not answer now); the orders, ended."""
        buyer = self.tasks.buyer
        steps = buyer.steps
        ended: list[Order] = []
        for order in await self.round_orders(task):
            # Steps that ask no seller: the consumer's hold, the signed request, a local reservation.
            while order.state in ("new", "held"):
                order = await steps.step(order) or await buyer.get(order.id)
            if order.state == "requested":
                cancel = steps.cancel_document(order)
                order = await steps.move(order, "abandon", reason=reason, **cancel) or await buyer.get(
                    order.id
                )
            if order.state == "accepted":
                order = await buyer.cancel(order.id)
            ended.append(await buyer.drive(order))
        return ended

    async def _place_offer(self, task: Task, spec: TaskSpec, rows: list[OfferRow], request_id: str) -> Placed:
        assert spec.offer is not None
        assert task.consumer is not None
        wanted = spec.offer
        found = [
            r
            for r in rows
            if r["id"] == wanted.offer_id
            and (r["source"] == wanted.source or r["source"].split(":", 1)[0] == wanted.source)
        ]
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise Refused("unknown_offer", f"{what} offer {wanted.offer_id!r} from {wanted.source!r}")
        offer = found[0]
        why = self.deliverable(offer)
        if why is not None:
            raise Refused("not_deliverable", why)
        image = image_for(spec, str(offer.get("chip_model", "")))
        order_id = order_id_for(self.tasks.name, task.consumer, request_id, 0)
        carried = task_document(task) if offer.get("partner") is not None else None
        try:
            order = await self.tasks.buyer.place(
                task.consumer, offer["id"], offer["source"], wanted.units, wanted.hours, order_id, carried
            )
        except RefusedError as exc:
            raise self._refusal(exc) from None
        except TradingError as exc:
            raise Refused(exc.code, str(exc)) from None
        return Placed(order, offer, image)
