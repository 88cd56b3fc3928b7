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

import logging
from dataclasses import replace
from typing import Any

import ledger
from federation import canonical
from federation.catalog import sha256_hex
from federation.partners import Partner
from ledger import Status
from node.peering.offers import partner_offers
from node.trading import books, documents, peer, rules, store
from node.trading.core import Trading
from node.trading.documents import Terms
from node.trading.errors import (
    OrderRequestError,
    PartnerUnavailableError,
    ProtocolError,
    RefusedError,
    StateError,
    TradingError,
    UnknownError,
)
from node.trading.machine import ORDER_RESTING
from node.trading.store import Order

log = logging.getLogger("cpnode.trading.buyer")
PARTNER_HOLD_MARGIN_S = 300  # our partner hold outlives the seller's by this much
REMOTE_HOLD_MARGIN_S = 3600  # the consumer's hold outlives the seller's answer and settlement
VOID_DONE = frozenset(
    {
        Status.PENDING_TRANSFER_ALREADY_VOIDED,
        Status.PENDING_TRANSFER_ALREADY_EXPIRED,
        Status.PENDING_TRANSFER_EXPIRED,
    }
)


class Buyer:
    """Orders placed at this node, and the steps that move them."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading

    # --- placing -------------------------------------------------------------------------------

    async def _offer(self, offer_id: str, source: str) -> tuple[dict[str, Any], Partner | None]:
        t = self.trading
        if source.startswith("partner:"):
            partner = await t.partner(source.removeprefix("partner:"))
            offers = await t.db(partner_offers, t.clock(), partner.name)
            found = next((o for o in offers if o.get("id") == offer_id), None)
            if found is None:
                raise UnknownError(
                    f"{partner.name}'s current catalog has no offer {offer_id!r}", code="unknown_offer"
                )
            return found, partner
        if source.startswith("own:") and source.removeprefix("own:") in t.capacity.raw_sources:
            view = t.service.offer_sources[source.removeprefix("own:")]
            found = next((o for o in await view() if o.get("id") == offer_id), None)
            if found is not None:
                return found, None
        raise UnknownError(
            f"no offer {offer_id!r} from {source!r} (see /api/v1/offers)", code="unknown_offer"
        )

    async def place(
        self, consumer: str, offer_id: str, source: str, units: int, hours: int, order_id: str | None
    ) -> Order:
        """Place and drive an order; RefusedError when it ends without a sale."""
        t = self.trading
        rules.check_consumer_id(consumer)
        rules.positive("units", units, rules.MAX_UNITS)
        rules.positive("hours", hours, rules.MAX_HOURS)
        order_id = (
            rules.check_trade_id(order_id, t.name) if order_id is not None else rules.new_trade_id(t.name)
        )
        asked = {"consumer": consumer, "offer_id": offer_id, "source": source, "units": units, "hours": hours}
        request_sha = sha256_hex(canonical.encode(asked))
        stored = await t.db(store.get_order, order_id)
        if stored is None:
            stored = await self._create(order_id, request_sha, consumer, offer_id, source, units, hours)
        elif stored.request_sha256 != request_sha:
            raise StateError(f"order {order_id} exists with other terms", code="order_id_reused")
        order = await self.drive(stored)
        if order.state in ("rejected", "cancelled"):
            code = (order.reason or "refused").split(":", 1)[0]
            raise RefusedError(
                f"order {order.id} was not accepted: {order.reason}", code=code, order=order.view()
            )
        return order

    async def _create(
        self,
        order_id: str,
        request_sha: str,
        consumer: str,
        offer_id: str,
        source: str,
        units: int,
        hours: int,
    ) -> Order:
        t = self.trading
        try:
            await t.db(ledger.get_account, rules.consumer_account(consumer))
        except ledger.NotFoundError:
            raise UnknownError(
                f"no consumer {consumer!r} (create it first)", code="unknown_consumer"
            ) from None
        offer, partner = await self._offer(offer_id, source)
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
            "state": "new",
            "request_sha256": request_sha,
            "notify_partner": False,
            "hold_expires_ts": now + timeout_s,
            "created_ts": now,
            "updated_ts": now,
        }
        _, order = await t.db(store.insert_order, values)
        return order

    # --- acting on a placed order ----------------------------------------------------------------

    async def settle(self, order_id: str, used_hours: int) -> Order:
        """Settle an accepted order for the hours used (0: nothing is charged)."""
        t = self.trading
        order = await self.get(order_id)
        if type(used_hours) is not int or not 0 <= used_hours <= order.hours:
            raise OrderRequestError(
                f"used_hours must be an integer from 0 to {order.hours}", code="bad_used_hours"
            )
        if order.state == "accepted":
            used = order.units * used_hours * order.price_per_unit_hour
            extra: dict[str, Any] = {}
            if order.partner is not None:
                await self._ensure_partner_hold(order)
                doc = documents.settlement(
                    t.identity(),
                    order.partner,
                    order.id,
                    used_hours,
                    used,
                    order.currency,
                    order.receipt_sha256,
                    t.clock(),
                )
                extra["settlement"] = canonical.encode(doc)
            moved = await t.db(
                store.move_order,
                order.id,
                "accepted",
                "settle",
                t.clock(),
                used_hours=used_hours,
                settled_amount=used,
                **extra,
            )
            order = moved or await self.get(order_id)
        if order.state not in ("settling", "posting", "settled") or order.used_hours != used_hours:
            raise StateError(
                f"order {order.id} is {order.state}; it cannot be settled for {used_hours} hours now"
            )
        return await self.drive(order)

    async def cancel(self, order_id: str) -> Order:
        """Cancel an accepted order: the seller voids its holds, then we void ours."""
        t = self.trading
        order = await self.get(order_id)
        if order.state == "accepted":
            await self._ensure_partner_hold(order)
            moved = await t.db(
                store.move_order, order.id, "accepted", "cancel", t.clock(), **self._cancel_document(order)
            )
            order = moved or await self.get(order_id)
        if order.state not in ("cancelling", "voiding", "cancelled"):
            raise StateError(f"order {order.id} is {order.state}; it cannot be cancelled now")
        return await self.drive(order)

    async def get(self, order_id: str) -> Order:
        """One order, or UnknownError."""
        order = await self.trading.db(store.get_order, order_id)
        if order is None:
            raise UnknownError(f"no order {order_id!r}", code="unknown_order")
        return order

    def _cancel_document(self, order: Order) -> dict[str, Any]:
        if order.partner is None:
            return {}
        t = self.trading
        doc = documents.settlement(
            t.identity(), order.partner, order.id, 0, 0, order.currency, order.receipt_sha256, t.clock()
        )
        return {"settlement": canonical.encode(doc)}

    async def drive(self, order: Order) -> Order:
        """Run the action of each state until the order rests (accepted or final)."""
        while order.state not in ORDER_RESTING:
            moved = await self._step(order)
            order = moved if moved is not None else await self.get(order.id)
        return order

    async def _move(self, order: Order, event: str, **values: Any) -> Order | None:
        return await self.trading.db(
            store.move_order, order.id, order.state, event, self.trading.clock(), **values
        )

    def _terms(self, order: Order) -> Terms:
        return Terms(
            order.offer_id, order.units, order.hours, order.price_per_unit_hour, order.currency, order.amount
        )

    async def _step(self, order: Order) -> Order | None:
        step = getattr(self, f"_on_{order.state}")
        result: Order | None = await step(order)
        return result

    async def _on_new(self, order: Order) -> Order | None:
        t = self.trading
        timeout_s = order.hold_expires_ts - order.created_ts
        if order.partner is None:
            await t.db(books.ensure_accounts, books.house_specs(order.currency, [order.pool]))
            legs = books.sale_holds(
                order.id,
                rules.consumer_account(order.consumer),
                order.pool,
                order.amount,
                order.fee,
                order.currency,
                timeout_s,
                order_id=order.id,
            )
        else:
            await t.db(
                books.ensure_accounts,
                [*books.house_specs(order.currency), *books.partner_specs(order.partner, order.currency)],
            )
            legs = [books.order_hold(order.id, order.consumer, order.amount, order.currency, timeout_s)]
        cause = await t.db(books.submit, legs)
        if cause is None:
            return await self._move(order, "held")
        reason = "insufficient_funds" if cause is Status.EXCEEDS_CREDITS else f"ledger_{cause}"
        return await self._move(order, "rejected", reason=reason)

    async def _on_held(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            found = await t.capacity.find(order.offer_id)
            free = int(found[1]["free_units"]) if found is not None else 0
            reserved = await t.db(
                store.reserve,
                store.order_reservation(order.id),
                order.offer_id,
                order.units,
                free,
                order.hold_expires_ts,
                t.clock(),
            )
            if reserved:
                return await self._move(order, "reserved")
            return await self._move(order, "refused", reason="not_enough_free_units")
        request = documents.trade_request(
            t.identity(), order.partner, order.id, self._terms(order), t.clock()
        )
        return await self._move(order, "requested", trade_request=canonical.encode(request))

    async def _on_requested(self, order: Order) -> Order | None:
        t = self.trading
        assert order.partner is not None
        assert order.trade_request is not None
        try:
            partner = await t.partner(order.partner)
        except UnknownError as exc:
            return await self._move(order, "refused", reason=f"unknown_partner: {exc}")
        try:
            response = await peer.post(
                t.service, partner, "/fed/v1/trades", order.trade_request, t.settings.trade_timeout_s
            )
        except PartnerUnavailableError as exc:
            return await self._move(
                order, "abandon", reason=f"partner_unavailable: {exc}", **self._cancel_document(order)
            )
        try:
            answer = peer.answer_document(response, partner)
            if response.status not in (200, 201):
                code, message = answer.get("error", "refused"), answer.get("message", "")
                return await self._move(order, "refused", reason=f"{code}: {partner.name} refused: {message}")
            await peer.verify_from(t.service, partner, answer)
            request = canonical.decode(order.trade_request)
            expires = documents.check_acceptance(
                answer, partner.name, t.name, order.id, documents.sha256_of(request), self._terms(order)
            )
        except ProtocolError as exc:
            # The seller may hold funds for an answer we cannot accept: cancel with it.
            return await self._move(
                order, "abandon", reason=f"{exc.code}: {exc}", **self._cancel_document(order)
            )
        record = documents.receipt(request, answer)
        moved = await self._move(
            order,
            "accepted",
            receipt=canonical.encode(record),
            receipt_sha256=documents.digest(record),
            partner_hold_expires_ts=expires,
        )
        if moved is not None:
            await self._ensure_partner_hold(moved)
        return moved

    async def _ensure_partner_hold(self, order: Order) -> None:
        """Record what we owe the partner for an accepted trade (once; idempotent)."""
        if order.partner is None or order.receipt_sha256 is None or order.partner_hold_expires_ts is None:
            return
        timeout_s = max(1, order.partner_hold_expires_ts - order.created_ts) + PARTNER_HOLD_MARGIN_S
        hold = books.partner_hold(
            order.id, order.partner, order.amount, order.currency, timeout_s, order.receipt_sha256
        )
        cause = await self.trading.db(books.submit, [hold])
        if cause is not None:
            raise StateError(
                f"could not record what order {order.id} owes {order.partner}: {cause}", code="ledger_refused"
            )

    async def _on_settling(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            return await self._move(order, "settled")
        assert order.settlement is not None
        partner = await t.partner(order.partner)
        path = f"/fed/v1/trades/{order.id}/settlement"
        response = await peer.post(t.service, partner, path, order.settlement, t.settings.trade_timeout_s)
        answer = peer.answer_document(response, partner)
        if response.status != 200:
            return await self._move(
                order,
                "refused",
                reason=f"{answer.get('error')}: {partner.name} refused the settlement: {answer.get('message')}",
            )
        await peer.verify_from(t.service, partner, answer)
        settled = canonical.decode(order.settlement)
        state = documents.check_settlement_receipt(
            answer, partner.name, t.name, order.id, documents.sha256_of(settled)
        )
        expected = "settled" if order.settled_amount else "voided"
        if state != expected or answer["amount"] != order.settled_amount:
            return await self._move(
                order, "refused", reason=f"bad_receipt: {partner.name} answered {state} {answer['amount']}"
            )
        record = documents.settlement_record(settled, answer)
        return await self._move(
            order,
            "settled",
            settlement_record=canonical.encode(record),
            settlement_sha256=documents.digest(record),
        )

    async def _on_posting(self, order: Order) -> Order | None:
        t = self.trading
        used = int(order.settled_amount or 0)
        if order.partner is None:
            requests = books.sale_resolutions(order.id, order.amount, order.fee, used, None)
        else:
            await self._ensure_partner_hold(order)
            requests = books.order_resolutions(order.id, used, True, order.settlement_sha256)
        cause = await t.db(books.submit, requests)
        if cause is not None and not (used == 0 and cause in VOID_DONE):
            raise StateError(f"the ledger refused to settle order {order.id}: {cause}", code="ledger_refused")
        return await self._move(order, "posted")

    async def _on_cancelling(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            return await self._move(order, "acknowledged")
        outcome = await self._deliver_cancel(order, t.settings.trade_timeout_s / 4)
        if outcome is None:
            return await self._move(order, "unreachable", notify_partner=True)
        return await self._move(order, "acknowledged", **outcome)

    async def _deliver_cancel(self, order: Order, deadline_s: float) -> dict[str, Any] | None:
        """Send the stored cancel to the seller; the order fields to store, or None if it did not answer."""
        t = self.trading
        assert order.partner is not None
        assert order.settlement is not None
        try:
            partner = await t.partner(order.partner)
            response = await peer.post(
                t.service, partner, f"/fed/v1/trades/{order.id}/settlement", order.settlement, deadline_s
            )
        except (PartnerUnavailableError, UnknownError):
            return None
        answer = peer.answer_document(response, partner)
        if response.status != 200:
            # The seller keeps nothing open for this trade (expired, refused, unknown): nothing to undo.
            return {"reason": f"{order.reason or 'cancelled'}; {partner.name}: {answer.get('error')}"}
        await peer.verify_from(t.service, partner, answer)
        settled = canonical.decode(order.settlement)
        documents.check_settlement_receipt(
            answer, partner.name, t.name, order.id, documents.sha256_of(settled)
        )
        record = documents.settlement_record(settled, answer)
        fields: dict[str, Any] = {
            "settlement_record": canonical.encode(record),
            "settlement_sha256": documents.digest(record),
        }
        accepted = answer.get("acceptance")
        if order.receipt is None and isinstance(accepted, dict) and order.trade_request is not None:
            # The seller had accepted although we never saw its answer: record the trade as it did,
            # so both ledgers show it accepted and then voided.
            await peer.verify_from(t.service, partner, accepted)
            request = canonical.decode(order.trade_request)
            expires = documents.check_acceptance(
                accepted, partner.name, t.name, order.id, documents.sha256_of(request), self._terms(order)
            )
            receipt = documents.receipt(request, accepted)
            fields.update(
                receipt=canonical.encode(receipt),
                receipt_sha256=documents.digest(receipt),
                partner_hold_expires_ts=expires,
            )
            await self._ensure_partner_hold(_with(order, **fields))
        return fields

    async def _on_voiding(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            requests = books.sale_resolutions(order.id, order.amount, order.fee, 0, None)
        else:
            with_partner = await t.db(books.hold_exists, f"{order.id}:escrow")
            requests = books.order_resolutions(order.id, 0, with_partner, order.settlement_sha256)
        cause = await t.db(books.submit, requests)
        if cause is not None and cause not in VOID_DONE:
            raise StateError(f"the ledger refused to void order {order.id}: {cause}", code="ledger_refused")
        return await self._move(order, "voided")

    # --- upkeep ----------------------------------------------------------------------------------

    async def upkeep(self) -> int:
        """Finish orders left between states and re-deliver unacknowledged cancels; return how many."""
        t = self.trading
        now = t.clock()
        touched = 0
        for order in await t.db(store.unfinished_orders, now - int(3 * t.settings.trade_timeout_s)):
            try:
                await self.drive(order)
                touched += 1
            except (TradingError, ledger.LedgerError) as exc:
                log.warning("order %s stays %s: %s", order.id, order.state, exc)
        for order in await t.db(store.orders_to_notify):
            if now > order.hold_expires_ts:
                await t.db(store.update_order, order.id, now, notify_partner=False)
                continue
            try:
                fields = await self._deliver_cancel(order, t.settings.trade_timeout_s / 4)
            except TradingError as exc:
                log.warning("cancel of order %s not delivered: %s", order.id, exc)
                continue
            if fields is not None:
                if "receipt_sha256" in fields:
                    # Mirror the seller's void of the trade we just learned it accepted.
                    cause = await t.db(
                        books.submit, books.order_resolutions(order.id, 0, True, fields["settlement_sha256"])
                    )
                    if cause is not None and cause not in VOID_DONE:
                        log.warning("could not void the partner hold of order %s: %s", order.id, cause)
                await t.db(store.update_order, order.id, now, notify_partner=False, **fields)
                touched += 1
        return touched


def _with(order: Order, **fields: Any) -> Order:
    return replace(order, **{k: v for k, v in fields.items() if k in Order.__dataclass_fields__})
