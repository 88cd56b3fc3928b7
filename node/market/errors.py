"""The market's error tree: one root and a machine-readable code on each (statuses: node.http.statuses).

`DemandError` is the caller's fault and changes nothing; `NoMatchError` says no offer satisfies
the demand (with the exclusions counted by reason); `PlanFailedError` says a split order could
not be placed whole, and that the parts placed before were cancelled. Refusals of a single order
are the trading package's own errors (node.trading.errors), passed on with the offers tried.
"""

from __future__ import annotations

from node.errors import CodedError, FieldError


class MarketError(CodedError, code="market_error"):
    """Root of every market error; `details` are added to the JSON error body."""


class DemandError(MarketError, FieldError, code="bad_demand"):
    """A demand that cannot be matched as stated; `field` names where."""


class NoMatchError(MarketError, LookupError, code="no_match"):
    """No offer satisfies the demand (or, with `split`, their free units cannot cover it)."""


class PlanFailedError(MarketError, code="plan_failed"):
    """A part of a split order was refused; the parts placed before it were cancelled."""


class StrategyError(MarketError, FieldError, code="bad_strategy"):
    """A strategy (or an A/B split) whose definition does not validate; `field` names where."""


class UnknownStrategyError(MarketError, LookupError, code="unknown_strategy"):
    """No strategy (or no such version of it) is registered, or the version asked for is retired."""
