"""The actions of the order state machine (node.trading.machine), one per state: each runs after
its state is stored, is idempotent, and ends by moving the order on (compare-and-set), so running
the action of the state an order was left in finishes it."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from federation import canonical
from federation import store as federation_store
from federation.httpsig import Identity
from federation.sync import usable_session
from ledger import Status, TransferRequest, TransferResult
from node.money import format_money
from node.trading import books, documents, peer, reservations, rules, store
from node.trading.batching import TradeBatcher
from node.trading.core import Trading
from node.trading.documents import Terms
from node.trading.errors import PartnerUnavailableError, ProtocolError, StateError, UnknownError
from node.trading.grouped import GroupedMoves, SharedWriter, moves_kind
from node.trading.holding import move_order_holding
from node.trading.machine import OrderEvent, OrderState
from node.trading.store import Order

log = logging.getLogger("cpnode.trading.buyer")
BAD_ANSWER = "bad_partner_answer"
CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_REASON = 500  # a reason quotes a partner's message: bounded
PARTNER_HOLD_MARGIN_S = 300  # our partner hold outlives the seller's by this much
VOID_DONE = frozenset(
    {
        Status.PENDING_TRANSFER_ALREADY_VOIDED,
        Status.PENDING_TRANSFER_ALREADY_EXPIRED,
        Status.PENDING_TRANSFER_EXPIRED,
    }
)


OrderAction = Callable[[Order], Awaitable[Order | None]]
MAX_REMEMBERED_REQUESTS = 4096  # trade requests kept between placing and their answer
Move = tuple[OrderEvent, Mapping[str, Any]]  # an event and the values written with it
# What calling a partner reads: its peer view and our session at it (federation.store.call_view).
CallView = tuple[federation_store.PeerView, federation_store.StoredSession | None]


class OrderSteps:
    """What each order state does."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading
        # By order id: what placing read for calling the partner, used once by the trade request
        # of the order being placed (the placer drops it when the order rests).
        self.calls: dict[str, CallView] = {}
        # By their bytes: trade requests signed while placing (on a database thread), with their
        # hash, so that the answer's check needs no parse of what this process just encoded.
        self._requests: dict[bytes, tuple[dict[str, Any], str]] = {}
        settings = trading.settings
        self.exchanges = TradeBatcher(trading.service, settings.max_batch_trades, settings.trade_exchanges)
        # The writes of concurrent orders, grouped (node.trading.grouped): answered orders' moves
        # to `accepted` first, then new orders being placed (the buyer adds that lane).
        self.writes = SharedWriter(trading)
        self.grouped = GroupedMoves(self.writes.lane(moves_kind(trading, partner_hold_of)))
        # The action of every state that is not resting (node.trading.machine); a table test checks
        # that the keys are exactly those states.
        self.actions: dict[OrderState, OrderAction] = {
            "new": self._on_new,
            "held": self._on_held,
            "requested": self._on_requested,
            "settling": self._on_settling,
            "posting": self._on_posting,
            "cancelling": self._on_cancelling,
            "voiding": self._on_voiding,
        }

    async def get(self, order_id: str) -> Order:
        """One order, or UnknownError."""
        order = await self.trading.db(store.get_order, order_id)
        if order is None:
            raise UnknownError(f"no order {order_id!r}", code="unknown_order")
        return order

    def cancel_document(self, order: Order) -> dict[str, Any]:
        """The stored cancel (a settlement of 0 hours) to send a partner, as order fields."""
        if order.partner is None:
            return {}
        t = self.trading
        doc = documents.settlement(
            t.identity(), order.partner, order.id, 0, 0, order.currency, order.receipt_sha256, t.clock()
        )
        return {"settlement": canonical.encode(doc)}

    async def move(
        self, order: Order, event: OrderEvent, *, lazy: bool = False, **values: Any
    ) -> Order | None:
        """Move the order from its current state by `event` (None if it moved meanwhile); `lazy`:
        a commit that need not reach the disk, for a move a durable write always follows."""
        return await self.trading.db(
            store.move_order, order.id, order.state, event, self.trading.clock(), lazy=lazy, **values
        )

    def terms(self, order: Order) -> Terms:
        """The order's terms as documents carry them."""
        return Terms(
            order.offer_id, order.units, order.hours, order.price_per_unit_hour, order.currency, order.amount
        )

    async def step(self, order: Order) -> Order | None:
        """Run the action of the order's state; the order as moved (None if it moved meanwhile)."""
        action = self.actions.get(order.state)
        if action is None:
            raise StateError(f"order {order.id} is {order.state}: it waits for the consumer")
        return await action(order)

    async def _on_new(self, order: Order) -> Order | None:
        t = self.trading
        timeout_s = order.hold_expires_ts - order.created_ts
        if order.partner is None:
            await t.ensure_accounts(books.house_specs(order.currency, [order.pool]))
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
            await self.ensure_partner_accounts(order.partner, order.currency)
        if order.partner is None:
            cause = await t.submit(legs)
            if cause is None:
                return await self.move(order, "held")
        else:
            # What `held` does for a partner's offer is only to sign the trade request: done first,
            # and written with the hold and the move in one transaction (`_on_held` still finishes
            # an order left in `held`). A hold the ledger refuses is committed alone, as a
            # separate submit would have, and the order moves to `rejected` below. (Placing
            # usually writes this with the new order already: `Buyer._create`.)
            now = t.clock()
            legs, moves = self.holding(order, t.identity(), now)
            results, moved = await t.db(move_order_holding, order.id, order.state, legs, moves, now)
            cause = await self._failure(results)
            if cause is None:
                return moved
        reason = f"ledger_{cause}"
        if cause is Status.EXCEEDS_CREDITS:
            available = await t.db(books.available, rules.consumer_account(order.consumer))
            reason = (
                f"insufficient_funds: {order.consumer} needs {format_money(order.amount, order.currency)} "
                f"for this order and has {format_money(available, order.currency)} available"
            )
        return await self.move(order, "rejected", reason=reason)

    async def _on_held(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            found = await t.capacity.find(order.offer_id)
            reserved = found is not None and await t.db(
                reservations.reserve,
                store.order_reservation(order.id),
                found[1],
                order.units,
                order.hold_expires_ts,
                t.clock(),
            )
            if reserved:
                return await self.move(order, "reserved")
            return await self.move(order, "refused", reason="not_enough_free_units")
        return await self.move(order, "requested", trade_request=canonical.encode(self._trade_request(order)))

    def _trade_request(
        self, order: Order, identity: Identity | None = None, now_ts: int | None = None
    ) -> dict[str, Any]:
        """The signed trade request for a partner's offer (with the task to run, when the order has
        one); signed by `identity` at `now_ts` when given (a database thread's caller takes them
        on the loop), else the node's current key now."""
        t = self.trading
        assert order.partner is not None
        task = None if order.task is None else canonical.decode(order.task)
        return documents.trade_request(
            identity or t.identity(),
            order.partner,
            order.id,
            self.terms(order),
            t.clock() if now_ts is None else now_ts,
            task=task,
        )

    async def ensure_partner_accounts(self, partner: str, currency: str) -> None:
        """The ledger accounts a partner order's holds move (a trip only for ones not known yet)."""
        await self.trading.ensure_accounts(
            [*books.house_specs(currency), *books.partner_specs(partner, currency)]
        )

    def holding(
        self, order: Order, identity: Identity, now_ts: int
    ) -> tuple[list[TransferRequest], list[Move]]:
        """What a new partner order writes in one transaction: the consumer's hold, and the moves to
        `held` and `requested` with the trade request signed by `identity` at `now_ts` (no I/O:
        callable on a database thread)."""
        assert order.partner is not None
        timeout_s = order.hold_expires_ts - order.created_ts
        legs = [books.order_hold(order.id, order.consumer, order.amount, order.currency, timeout_s)]
        document = self._trade_request(order, identity, now_ts)
        request, request_sha = documents.signed_encoded(document)
        if len(self._requests) >= MAX_REMEMBERED_REQUESTS:  # requests of orders never placed
            self._requests.clear()
        self._requests[request] = (document, request_sha)
        return legs, [("held", {}), ("requested", {"trade_request": request})]

    def _read_request(self, data: bytes) -> tuple[dict[str, Any], str]:
        """A stored trade request and its hash (`documents.read_signed`), as signed when placing
        made it in this process, else parsed."""
        return self._requests.pop(data, None) or documents.read_signed(data)

    async def _on_requested(self, order: Order) -> Order | None:
        t = self.trading
        assert order.partner is not None
        assert order.trade_request is not None
        # The partner, its keys and our session at it: read with placing, else in one trip (each
        # hop to a database thread costs more than the queries).
        call = self.calls.pop(order.id, None)
        view, stored = call if call is not None else await t.db(federation_store.call_view, order.partner)
        partner = view.partner
        if partner is None:
            return await self.move(
                order, "refused", reason=f"unknown_partner: {order.partner!r} is not a partner of this node"
            )
        try:
            # Batched with the other orders' trade requests for this partner meanwhile.
            response = await self.exchanges.post(
                partner,
                order.trade_request,
                t.settings.trade_timeout_s,
                session=usable_session(t.service, stored),
            )
        except PartnerUnavailableError as exc:
            return await self.move(
                order, "abandon", reason=f"partner_unavailable: {exc}", **self.cancel_document(order)
            )
        except ProtocolError as exc:
            return await self.move(order, "abandon", reason=bad_answer(exc), **self.cancel_document(order))
        try:
            answer = peer.answer_document(response, partner)
            if response.status not in (200, 201):
                return await self.move(
                    order, "refused", reason=refusal_reason(answer, partner.name, "refused")
                )
            signed = response if isinstance(response, peer.SignedAnswer) else None
            await peer.verify_from(
                t.service, partner, answer, view, None if signed is None else signed.payload
            )
            request, request_sha = self._read_request(order.trade_request)
            expires = documents.check_acceptance(
                answer, partner.name, t.name, order.id, request_sha, self.terms(order)
            )
        except ProtocolError as exc:
            # The seller may hold funds for an answer we cannot accept: cancel with it.
            return await self.move(order, "abandon", reason=bad_answer(exc), **self.cancel_document(order))
        receipt, receipt_sha = documents.receipt_encoded(
            request, order.trade_request, answer, None if signed is None else signed.body
        )
        # The move and the hold of what we owe the partner commit together, durably, before the
        # consumer hears of it, in a transaction shared with the other orders' moves meanwhile (the
        # answers of one trade batch): one durable commit for the group, not one per order.
        moved, held = await self.grouped.move_holding(
            order, "accepted", receipt=receipt, receipt_sha256=receipt_sha, partner_hold_expires_ts=expires
        )
        if moved is not None and held is not None:
            self._owed(moved, await self._failure([held]))
        return moved

    async def _failure(self, results: list[TransferResult]) -> Status | None:
        """None when every transfer is stored, else the failure's cause (`books.failure`; a trip to
        a database thread only then)."""
        if all(result.ok for result in results):
            return None
        return await self.trading.db(books.failure, results)

    @staticmethod
    def _owed(order: Order, cause: Status | None) -> None:
        """StateError when the ledger refused (`cause`) the partner hold of `order`."""
        if cause is not None:
            raise StateError(
                f"could not record what order {order.id} owes {order.partner}: {cause}", code="ledger_refused"
            )

    async def ensure_partner_hold(self, order: Order) -> None:
        """Record what we owe the partner for an accepted trade (once; idempotent)."""
        hold = partner_hold_of(order)
        if hold is not None:
            self._owed(order, await self.trading.submit([hold]))

    async def _on_settling(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            return await self.move(order, "settled")
        assert order.settlement is not None
        partner = await t.partner(order.partner)
        path = f"/fed/v1/trades/{order.id}/settlement"
        settled, settled_sha = documents.read_signed(order.settlement)
        try:
            response = await peer.post(t.service, partner, path, order.settlement, t.settings.trade_timeout_s)
            answer = peer.answer_document(response, partner)
            if response.status != 200:
                reason = refusal_reason(answer, partner.name, "refused the settlement")
                return await self.move(order, "refused", reason=reason)
            await peer.verify_from(t.service, partner, answer)
            state = documents.check_settlement_receipt(answer, partner.name, t.name, order.id, settled_sha)
            expected = "settled" if order.settled_amount else "voided"
            if state != expected or answer["amount"] != order.settled_amount:
                raise ProtocolError(
                    f"{partner.name} answered {state} {answer['amount']}, not {expected} {order.settled_amount}",
                    code="bad_receipt",
                )
        except ProtocolError as exc:
            # Nobody is paid on an answer we cannot trust; the difference shows in reconciliation.
            return await self.move(order, "bad_answer", reason=bad_answer(exc))
        record, record_sha = documents.encoded(documents.settlement_record(settled, answer))
        return await self.move(order, "settled", settlement_record=record, settlement_sha256=record_sha)

    async def _on_posting(self, order: Order) -> Order | None:
        t = self.trading
        used = int(order.settled_amount or 0)
        code = rules.CODE_SALE if order.partner is None else rules.CODE_ORDER
        code = code if order.used_s is not None else rules.CODE_OPERATOR_USAGE
        if order.partner is None:
            requests = books.sale_resolutions(order.id, order.amount, order.fee, used, None, post_code=code)
        else:
            await self.ensure_partner_hold(order)
            requests = books.order_resolutions(order.id, used, order.settlement_sha256, post_code=code)
        cause = await t.submit(requests)
        if cause is not None and not (used == 0 and cause in VOID_DONE):
            raise StateError(f"the ledger refused to settle order {order.id}: {cause}", code="ledger_refused")
        return await self.move(order, "posted")

    async def _on_cancelling(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            return await self.move(order, "acknowledged")
        try:
            outcome = await self.deliver_cancel(order, t.settings.trade_timeout_s / 4)
        except ProtocolError as exc:
            # Delivered, but answered with what we cannot read or trust: nothing more to tell it.
            return await self.move(
                order, "bad_answer", reason=f"{order.reason or 'cancelled'}; {bad_answer(exc)}"
            )
        if outcome is None:
            return await self.move(order, "unreachable", notify_partner=True)
        return await self.move(order, "acknowledged", **outcome)

    async def deliver_cancel(self, order: Order, deadline_s: float) -> dict[str, Any] | None:
        """Send the stored cancel to the seller; the order fields to store, None if it did not answer,
        ProtocolError if its answer cannot be read or trusted."""
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
            code = refusal_reason(answer, partner.name, "").split(":", 1)[0]
            return {"reason": f"{order.reason or 'cancelled'}; {partner.name}: {code}"}
        await peer.verify_from(t.service, partner, answer)
        settled, settled_sha = documents.read_signed(order.settlement)
        documents.check_settlement_receipt(answer, partner.name, t.name, order.id, settled_sha)
        record, record_sha = documents.encoded(documents.settlement_record(settled, answer))
        fields: dict[str, Any] = {"settlement_record": record, "settlement_sha256": record_sha}
        accepted = answer.get("acceptance")
        if order.receipt is None and isinstance(accepted, dict) and order.trade_request is not None:
            # The seller had accepted although we never saw its answer: record the trade as it did,
            # so both ledgers show it accepted and then voided.
            await peer.verify_from(t.service, partner, accepted)
            request, request_sha = documents.read_signed(order.trade_request)
            expires = documents.check_acceptance(
                accepted, partner.name, t.name, order.id, request_sha, self.terms(order)
            )
            receipt, receipt_sha = documents.encoded(documents.receipt(request, accepted))
            fields.update(receipt=receipt, receipt_sha256=receipt_sha, partner_hold_expires_ts=expires)
            await self.ensure_partner_hold(_with(order, **fields))
        return fields

    async def _on_voiding(self, order: Order) -> Order | None:
        t = self.trading
        if order.partner is None:
            requests = books.sale_resolutions(order.id, order.amount, order.fee, 0, None)
        else:
            with_partner = await t.db(books.hold_exists, f"{order.id}:escrow")
            legs = ("hold", "escrow") if with_partner else ("hold",)
            requests = books.order_resolutions(order.id, 0, order.settlement_sha256, legs)
        cause = await t.submit(requests)
        if cause is not None and cause not in VOID_DONE:
            raise StateError(f"the ledger refused to void order {order.id}: {cause}", code="ledger_refused")
        return await self.move(order, "voided")


def partner_hold_of(order: Order) -> TransferRequest | None:
    """What we owe the partner for an accepted trade, as a ledger hold (None until it is accepted)."""
    if order.partner is None or order.receipt_sha256 is None or order.partner_hold_expires_ts is None:
        return None
    timeout_s = max(1, order.partner_hold_expires_ts - order.created_ts) + PARTNER_HOLD_MARGIN_S
    return books.partner_hold(
        order.id, order.partner, order.amount, order.currency, timeout_s, order.receipt_sha256
    )


def bad_answer(exc: ProtocolError) -> str:
    """The reason an order records for a partner's answer it cannot read or trust."""
    return f"{BAD_ANSWER}: {exc.code}: {exc}"[:MAX_REASON]


def refusal_reason(answer: dict[str, Any], partner: str, what: str) -> str:
    """The reason an order records for a partner's refusal: its code (when it looks like one) and message."""
    code, message = answer.get("error"), answer.get("message")
    code = code if isinstance(code, str) and CODE_RE.fullmatch(code) else "refused"
    message = message if isinstance(message, str) else ""
    return f"{code}: {partner} {what}: {message}"[:MAX_REASON]


def _with(order: Order, **fields: Any) -> Order:
    return replace(order, **{k: v for k, v in fields.items() if k in Order.__dataclass_fields__})
