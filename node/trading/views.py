"""What the trading API shows of consumers and orders (no I/O): used by the routes and by the market's
ordering by demand, so neither imports the other's HTTP module."""

from __future__ import annotations

from typing import Any

from federation import canonical
from ledger import Account
from node.trading import rules
from node.trading.records import ORDER_DOCUMENTS, Order


def consumer_view(account: Account) -> dict[str, Any]:
    """A consumer's balances: deposited and spent (posted), held (pending), available to order."""
    b = account.balance
    return {
        "id": account.id.removeprefix(rules.CONSUMER_PREFIX),
        "account": account.id,
        "currency": account.spec.currency,
        "balance": b.credits_posted - b.debits_posted,
        "held": b.debits_pending,
        "available": b.credits_posted - b.debits_posted - b.debits_pending,
        "closed": account.closed_seq is not None,
    }


def order_view(order: Order, documents: bool = False) -> dict[str, Any]:
    """An order as the API shows it, optionally with its stored documents."""
    view = order.view()
    if documents:
        for name in ORDER_DOCUMENTS:
            raw = getattr(order, name)
            view[name] = None if raw is None else canonical.decode(raw)
    return view
