"""The buyer side: a consumer's order for an offer of this node or of a partner, driven through the
order state machine (node.trading.machine) until it rests.

Placing an order prices it from the offer as the merged offer view shows it (a partner's offer as
its catalog for us states it), holds the consumer's money first, then either reserves local
capacity or asks the partner with a signed trade request. Each step's action runs after its
state is stored and is idempotent, so `drive` can finish any order left between states: the
recovery job does that for orders nobody touched for a while, and re-delivers cancels the seller
has not acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import ledger
from federation import canonical
from federation.catalog import sha256_hex
from federation.partners import Partner
from node.db import log_failure
from node.offers import CatalogOffer
from node.trading import books, documents, rules, store
from node.trading.core import Trading
from node.trading.errors import (
    OrderRequestError,
    PartnerFaultError,
    ProtocolError,
    RefusedError,
    StateError,
    TradingError,
    UnknownError,
)
from node.trading.grouped import Lane, WriteKind
from node.trading.machine import ORDER_RESTING
from node.trading.placing import Placing, PlacingCall, place_group, place_group_in, read_for_placing
from node.trading.steps import BAD_ANSWER, VOID_DONE, OrderSteps, bad_answer
from node.trading.store import Order

log = logging.getLogger("cpnode.trading.buyer")
REMOTE_HOLD_MARGIN_S = 3600  # the consumer's hold outlives the seller's answer and settlement


class OrderTerms(NamedTuple):
    """What a consumer asked to order, checked (`request_sha`: the hash of what was asked)."""

    order_id: str
    request_sha: str
    consumer: str
    offer_id: str
    source: str
    units: int
    hours: int
    task: dict[str, Any] | None
    fresh: bool = False  # `order_id` was chosen here just now (`rules.new_trade_id`): no order has it


def _known(read: Placing, consumer: str) -> Placing:
    """`read`, or UnknownError when its consumer has no account."""
    if not read.consumer_exists:
        raise UnknownError(f"no consumer {consumer!r} (create it first)", code="unknown_consumer")
    return read


class Buyer:
    """Orders placed at this node, and the steps that move them."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading
        self.steps = OrderSteps(trading)
        # New partner orders placed meanwhile share one durable transaction (`place_group`), with
        # the moves to `accepted` waiting then (node.trading.grouped).
        self.placings: Lane[PlacingCall, Placing] = self.steps.writes.lane(
            WriteKind(place_group_in, place_group)
        )
        # Which task (if any) meters an order: its usage is settled from what ran, never by hand.
        self.metered_by: Callable[[str], Awaitable[str | None]] | None = None

    # --- placing -------------------------------------------------------------------------------

    def _partner_offer(self, offer_id: str, source: str, read: Placing) -> tuple[CatalogOffer, Partner]:
        """The partner's offer placing read, or UnknownError (the partner or the offer is unknown)."""
        name = source.removeprefix("partner:")
        if read.partner is None:
            raise UnknownError(f"{name!r} is not a partner of this node", code="unknown_partner")
        row = read.partner_offer
        if row is None or row["id"] != offer_id:
            raise UnknownError(f"{name}'s current catalog has no offer {offer_id!r}", code="unknown_offer")
        return row, read.partner

    async def _offer(self, offer_id: str, source: str, read: Placing) -> tuple[CatalogOffer, Partner | None]:
        t = self.trading
        if source.startswith("partner:"):
            return self._partner_offer(offer_id, source, read)
        view = t.capacity.views.get(source.removeprefix("own:")) if source.startswith("own:") else None
        if view is not None:
            found = next((o for o in await view() if o["id"] == offer_id), None)
            if found is not None:
                return found, None
        raise UnknownError(
            f"no offer {offer_id!r} from {source!r} (see /api/v1/offers)", code="unknown_offer"
        )

    async def place(
        self,
        consumer: str,
        offer_id: str,
        source: str,
        units: int,
        hours: int,
        order_id: str | None,
        task: dict[str, Any] | None = None,
        require_active: bool = False,
    ) -> Order:
        """Place and drive an order; RefusedError when it ends without a sale. `task` is the task
        document a partner's trade carries (the partner runs it); an own offer's order takes none.
        `require_active`: refuse (403) a consumer whose account is not active, before anything else."""
        t = self.trading
        rules.check_consumer_id(consumer)
        rules.positive("units", units, rules.MAX_UNITS)
        rules.positive("hours", hours, rules.MAX_HOURS)
        fresh = order_id is None
        order_id = rules.new_trade_id(t.name) if fresh else rules.check_trade_id(order_id, t.name)
        asked = {"consumer": consumer, "offer_id": offer_id, "source": source, "units": units, "hours": hours}
        if task is not None:
            asked["task"] = task
        request_sha = sha256_hex(canonical.encode(asked))
        terms = OrderTerms(order_id, request_sha, consumer, offer_id, source, units, hours, task, fresh)
        existed, stored = await self._create(terms, consumer if require_active else None, hold=True)
        if existed is not None and existed.request_sha256 != request_sha:
            raise StateError(f"order {order_id} exists with other terms", code="order_id_reused")
        order = await self.drive(stored)
        if order.state in ("rejected", "cancelled"):
            raise self._refused(order, "was not accepted")
        return order

    def _refused(self, order: Order, what: str) -> RefusedError:
        """The error for an order that ended without a sale: 502 when the partner's answer could not
        be read or trusted, else 409 with the reason's code."""
        code = (order.reason or "refused").split(":", 1)[0]
        message = f"order {order.id} {what}: {order.reason}"
        if code == BAD_ANSWER:
            return PartnerFaultError(message, order=order.view())
        return RefusedError(message, code=code, order=order.view())

    async def _create(
        self, terms: OrderTerms, active: str | None = None, hold: bool = False
    ) -> tuple[Order | None, Order]:
        """Read what placing reads and store the new order: (the order stored under its id before,
        if any; the order). A partner's offer is in that read, so its order is inserted in the same
        trip to a database thread; an own offer's is asked of its source first. `active`: a consumer
        whose account must be active. `hold`: a new partner order is written with its hold and its
        moves to `requested` in that trip too (else it is left `new`, for its steps)."""
        t = self.trading
        source, consumer = terms.source, terms.consumer
        partner = source.removeprefix("partner:") if source.startswith("partner:") else None

        def values_of(read: Placing) -> dict[str, Any]:
            offer, found = self._partner_offer(terms.offer_id, source, _known(read, consumer))
            return self._values(terms, offer, found)

        now, holding = t.clock(), None
        if partner is not None and hold:
            # The new order's hold and its moves to `requested` in placing's transaction: the
            # signing key and the time are taken here, on the loop.
            await self.steps.ensure_partner_accounts(partner, t.settings.currency)
            identity = t.identity()
            holding = functools.partial(self.steps.holding, identity=identity, now_ts=now)
        if partner is not None and holding is not None:
            # Shared with the other orders placed meanwhile: one durable transaction for all.
            call = PlacingCall(
                terms.order_id,
                rules.consumer_account(consumer),
                partner,
                terms.offer_id,
                now,
                active,
                values_of,
                holding,
                fresh=terms.fresh,
            )
            read = await self.placings.submit(call)
        else:
            read = await t.db(
                read_for_placing,
                terms.order_id,
                rules.consumer_account(consumer),
                partner,
                terms.offer_id,
                now,
                active,
                None if partner is None else values_of,
                holding,
            )
        stored = read.order or read.created
        if read.created is not None and read.call is not None:
            self.steps.calls[read.created.id] = read.call
        if stored is not None:
            return read.order, stored
        offer, found = await self._offer(terms.offer_id, source, _known(read, consumer))
        # Lazy: before the consumer hears of the order, its hold or its move to another state is
        # committed durably, and that flushes this insert too (node.db.engine LAZY_COMMIT_OPTION).
        _, created = await t.db(store.insert_order, self._values(terms, offer, found), lazy=True)
        return None, created

    def _values(self, terms: OrderTerms, offer: CatalogOffer, partner: Partner | None) -> dict[str, Any]:
        """A new order's row for `terms` priced from `offer`; OrderRequestError or RefusedError when
        the offer cannot take it."""
        t = self.trading
        order_id, request_sha, consumer, offer_id, source, units, hours, task, _ = terms
        if task is not None and partner is None:
            raise OrderRequestError("only a partner's trade carries a task document", code="bad_request")
        if offer["currency"] != t.settings.currency:
            raise OrderRequestError(
                f"this node trades in {t.settings.currency}, the offer is in {offer['currency']}",
                code="currency_mismatch",
            )
        if int(offer["free_units"]) < units:
            raise RefusedError(
                f"{offer_id} has {offer['free_units']} free units, fewer than {units}",
                code="not_enough_free_units",
            )
        price = int(offer["price_per_unit_hour"])
        amount = rules.order_amount(units, hours, price)
        now = t.clock()
        timeout_s = rules.hold_timeout_s(hours, t.settings.settle_grace_s) + (
            REMOTE_HOLD_MARGIN_S if partner else 0
        )
        values = {
            "id": order_id,
            "consumer": consumer,
            "offer_id": offer_id,
            "source": source,
            "partner": partner.name if partner else None,
            "pool": str(offer["pool"]),
            "units": units,
            "hours": hours,
            "price_per_unit_hour": price,
            "currency": t.settings.currency,
            "amount": amount,
            "fee": 0 if partner else rules.fee_of(amount, t.settings.platform_fee_bp),
            "request_sha256": request_sha,
            "notify_partner": False,
            "task": None if task is None else canonical.encode(task),
            "hold_expires_ts": now + timeout_s,
            "created_ts": now,
            "updated_ts": now,
        }
        return values

    # --- acting on a placed order ----------------------------------------------------------------

    async def settle(self, order_id: str, used_hours: int) -> Order:
        """Settle an accepted order for hours typed by hand (0: nothing is charged): an operator's
        correction, whose posts the ledger records as such (`CODE_OPERATOR_USAGE`)."""
        order = await self.get(order_id)
        task_id = None if self.metered_by is None else await self.metered_by(order.id)
        if task_id is not None:
            raise StateError(
                f"order {order.id} is metered by task {task_id}: it is settled for what ran when the task ends",
                code="metered_order",
            )
        if type(used_hours) is not int or not 0 <= used_hours <= order.hours:
            raise OrderRequestError(
                f"used_hours must be an integer from 0 to {order.hours}", code="bad_used_hours"
            )
        used = order.units * used_hours * order.price_per_unit_hour
        return await self._settle(order, used_hours, None, used, None)

    async def settle_metered(self, order_id: str, used_s: int, usage_sha256: str | None = None) -> Order:
        """Settle an accepted order for `used_s` metered seconds, prorated to the second (0: nothing
        is charged); `usage_sha256` names the seller's signed usage record it settles, if any."""
        order = await self.get(order_id)
        if type(used_s) is not int:
            raise OrderRequestError("used_s must be an integer", code="bad_used_s")
        used = rules.usage_amount(order.units, order.hours, order.price_per_unit_hour, used_s)
        return await self._settle(order, rules.hours_covering(used_s), used_s, used, usage_sha256)

    async def _settle(
        self, order: Order, used_hours: int, used_s: int | None, used: int, usage_sha256: str | None
    ) -> Order:
        t = self.trading
        if order.state == "accepted":
            extra: dict[str, Any] = {}
            if order.partner is not None:
                await self.steps.ensure_partner_hold(order)
                doc = documents.settlement(
                    t.identity(),
                    order.partner,
                    order.id,
                    used_hours,
                    used,
                    order.currency,
                    order.receipt_sha256,
                    t.clock(),
                    metered=None if used_s is None else (used_s, usage_sha256),
                )
                extra["settlement"] = canonical.encode(doc)
            moved = await t.db(
                store.move_order,
                order.id,
                "accepted",
                "settle",
                t.clock(),
                used_hours=used_hours,
                used_s=used_s,
                settled_amount=used,
                **extra,
            )
            order = moved or await self.get(order.id)
        if (
            order.state not in ("settling", "posting", "settled")
            or order.used_hours != used_hours
            or order.used_s != used_s
        ):
            what = f"{used_hours} hours" if used_s is None else f"{used_s} metered seconds"
            raise StateError(f"order {order.id} is {order.state}; it cannot be settled for {what} now")
        order = await self.drive(order)
        if order.state == "cancelled" and (order.reason or "").startswith(BAD_ANSWER):
            raise self._refused(order, "was not settled")
        return order

    async def cancel(self, order_id: str) -> Order:
        """Cancel an accepted order: the seller voids its holds, then we void ours."""
        t = self.trading
        order = await self.get(order_id)
        if order.state == "accepted":
            await self.steps.ensure_partner_hold(order)
            moved = await t.db(
                store.move_order,
                order.id,
                "accepted",
                "cancel",
                t.clock(),
                **self.steps.cancel_document(order),
            )
            order = moved or await self.get(order_id)
        if order.state not in ("cancelling", "voiding", "cancelled"):
            raise StateError(f"order {order.id} is {order.state}; it cannot be cancelled now")
        return await self.drive(order)

    async def get(self, order_id: str) -> Order:
        """One order, or UnknownError."""
        return await self.steps.get(order_id)

    async def drive(self, order: Order) -> Order:
        """Run the action of each state until the order rests (accepted or final)."""
        try:
            while order.state not in ORDER_RESTING:
                moved = await self.steps.step(order)
                order = moved if moved is not None else await self.get(order.id)
        finally:
            self.steps.calls.pop(order.id, None)
            if order.partner is None:  # its own offers: their free units may have changed
                self.trading.capacity.changed()
        return order

    # --- upkeep ----------------------------------------------------------------------------------

    async def upkeep(self) -> int:
        """Finish orders left between states and re-deliver unacknowledged cancels; return how many.

        Each partner's orders run in turn, the partners side by side, each within `upkeep_budget_s`:
        one partner that answers slowly or badly never holds up the orders of another (what a
        partner leaves undone waits for the next round). One order's trouble never stops the rest."""
        t = self.trading
        now = t.clock()
        work: dict[str | None, list[tuple[str, Order]]] = {}
        for order in await t.db(store.unfinished_orders, now - int(3 * t.settings.trade_timeout_s)):
            work.setdefault(order.partner, []).append(("finish", order))
        for order in await t.db(store.orders_to_notify):
            work.setdefault(order.partner, []).append(("notify", order))
        done = await asyncio.gather(*(self._upkeep_partner(partner, jobs) for partner, jobs in work.items()))
        return sum(done)

    def upkeep_budget_s(self) -> float:
        """How long one round may spend on one partner's orders."""
        return max(2 * self.trading.settings.trade_timeout_s, self.trading.settings.recover_every_s)

    async def _upkeep_partner(self, partner: str | None, jobs: list[tuple[str, Order]]) -> int:
        touched = 0
        try:
            async with asyncio.timeout(self.upkeep_budget_s()):
                for job, order in jobs:
                    try:
                        touched += await (
                            self._finish_left(order) if job == "finish" else self._notify(order)
                        )
                    except (TradingError, ledger.LedgerError) as exc:
                        log.warning("order %s stays %s: %s", order.id, order.state, exc)
                    except Exception as exc:  # an order's trouble must not stop the others
                        log_failure(log, exc, "upkeep of order %s failed", order.id)
        except TimeoutError:
            log.warning("upkeep of %s's orders ran out of time; the rest wait for the next round", partner)
        return touched

    async def _finish_left(self, order: Order) -> int:
        """Drive an order left between states until it rests."""
        await self.drive(order)
        return 1

    async def _notify(self, order: Order) -> int:
        """Deliver the cancel an order owes its seller (once its hold has lapsed, stop trying)."""
        t = self.trading
        now = t.clock()
        if now > order.hold_expires_ts:
            await t.db(store.update_order, order.id, now, notify_partner=False)
            return 0
        try:
            fields = await self.steps.deliver_cancel(order, t.settings.trade_timeout_s / 4)
        except ProtocolError as exc:
            # Delivered, answered with what we cannot read or trust: nothing more to tell it.
            reason = f"{order.reason or 'cancelled'}; {bad_answer(exc)}"
            await t.db(store.update_order, order.id, now, notify_partner=False, reason=reason)
            return 1
        except TradingError as exc:
            log.warning("cancel of order %s not delivered: %s", order.id, exc)
            return 0
        if fields is None:
            return 0
        if "receipt_sha256" in fields:
            # Mirror the seller's void of the trade we just learned it accepted.
            cause = await t.submit(
                books.order_resolutions(order.id, 0, fields["settlement_sha256"], ("escrow",))
            )
            if cause is not None and cause not in VOID_DONE:
                log.warning("could not void the partner hold of order %s: %s", order.id, cause)
        await t.db(store.update_order, order.id, now, notify_partner=False, **fields)
        return 1
