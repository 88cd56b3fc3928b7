"""The trading error tree: one root and a machine-readable code on each (the HTTP edge maps the
classes to statuses in node.http.statuses; a `Refusal` carries the status its decision chose).

Errors about what a caller asked (`OrderRequestError`, `UnknownError`, `StateError`) are 4xx and
change nothing. `RefusedError` says the order ended without a sale (insufficient funds, no
capacity, the seller refused) and carries the order; `PartnerFaultError` (502) is the same when
the seller's answer could not be read or trusted. `PartnerUnavailableError` is the seller's fault
or the network's: the order keeps its state and is picked up again later. `ProtocolError` is a
partner's answer that breaks the protocol. `Refusal` is the seller's side: a decision not to
trade or settle, answered to the partner as a signed refusal.
"""

from __future__ import annotations

from node.errors import CodedError


class TradingError(CodedError, code="trading_error"):
    """Root of every trading error; `details` are added to the JSON error body."""


class OrderRequestError(TradingError, ValueError, code="bad_request"):
    """A malformed order, consumer, deposit or settlement request."""


class UnknownError(TradingError, LookupError, code="not_found"):
    """The consumer, offer or order does not exist."""


class StateError(TradingError, code="bad_order_state"):
    """The order's state does not allow this (settling a cancelled order, a different settlement...)."""


class RefusedError(TradingError, code="refused"):
    """The order ended without a sale; `details['order']` shows it."""


class PartnerUnavailableError(TradingError, TimeoutError, code="partner_unavailable"):
    """The seller did not answer in time; the order stays as it is and is retried."""


class ProtocolError(TradingError, code="bad_partner_answer"):
    """A partner answered with a document that breaks the trade protocol (remote fault)."""


class Refusal(TradingError):
    """The seller's decision not to do what a partner asked; the seller answers it as a signed
    refusal document (node.trading.seller), with this status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.http_status = status  # the decision's own status (node.trading.decisions)


class PartnerFaultError(RefusedError, code="bad_partner_answer"):
    """The order ended without a sale because the partner answered what we cannot read or trust;
    `details['order']` shows it (cancelled, the consumer's money released)."""
