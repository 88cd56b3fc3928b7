"""The records of trading, with no I/O: an order placed here and a sale to a partner, as stored
(node.trading.tables maps them to rows), and the ids of their capacity reservations."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from node.trading.machine import OrderState, SaleState

ORDER_DOCUMENTS = ("trade_request", "receipt", "settlement", "settlement_record", "task")


@dataclass(frozen=True)
class Order:
    """A row of `trading_orders`."""

    id: str
    consumer: str
    offer_id: str
    source: str
    partner: str | None
    pool: str
    units: int
    hours: int
    price_per_unit_hour: int
    currency: str
    amount: int
    fee: int
    state: OrderState
    reason: str | None
    request_sha256: str
    trade_request: bytes | None
    receipt: bytes | None
    receipt_sha256: str | None
    partner_hold_expires_ts: int | None
    used_hours: int | None
    used_s: int | None  # metered seconds; None when settled by hand in hours (an operator's correction)
    settled_amount: int | None
    settlement: bytes | None
    settlement_record: bytes | None
    settlement_sha256: str | None
    notify_partner: bool
    task: bytes | None  # the task document the trade request carries to the partner that runs it
    hold_expires_ts: int
    created_ts: int
    updated_ts: int

    def view(self) -> dict[str, Any]:
        """What the API shows of an order (documents by their digests only)."""
        # Field by field, not `asdict` (which deep-copies every value): listing pages show many orders.
        return {name: getattr(self, name) for name in _ORDER_VIEW}


@dataclass(frozen=True)
class Sale:
    """A row of `trading_sales`."""

    partner: str
    trade_id: str
    offer_id: str | None
    pool: str | None
    units: int
    hours: int
    price_per_unit_hour: int
    currency: str
    amount: int
    fee: int
    state: SaleState
    reason: str | None
    request_sha256: str | None
    acceptance: bytes | None
    receipt_sha256: str | None
    settlement_sha256: str | None
    settlement_receipt: bytes | None
    record_sha256: str | None
    used_hours: int | None
    used_s: int | None
    settled_amount: int | None
    hold_expires_ts: int
    created_ts: int
    updated_ts: int

    @property
    def reservation_id(self) -> str:
        """The id of this sale's capacity reservation."""
        return sale_reservation(self.partner, self.trade_id)

    def view(self) -> dict[str, Any]:
        """What the API shows of a sale (documents by their digests only)."""
        return {name: getattr(self, name) for name in _SALE_VIEW}


def order_reservation(order_id: str) -> str:
    """The reservation id of a local order."""
    return f"order:{order_id}"


def sale_reservation(partner: str, trade_id: str) -> str:
    """The reservation id of a sale."""
    return f"sale:{partner}:{trade_id}"


_ORDER_VIEW = tuple(f.name for f in fields(Order) if f.name not in ORDER_DOCUMENTS)
_SALE_VIEW = tuple(f.name for f in fields(Sale) if f.name not in ("acceptance", "settlement_receipt"))
