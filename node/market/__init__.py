"""The market: a consumer's demand matched against this node's and its partners' offers.

Pure core: `demand` (the typed, validated demand) and `matching` (filter with reasons, rank by
objective, decompose with `split`); for demands that name a strategy, `columns` (the same rules
over NumPy columns), `strategy_spec`, `strategies` and `placement`. Edges: `view` (the offers to match, from the merged offer
view), `scheduled` (strategies resolved, the network view read, orders noted), `ordering` (orders placed on the best match through the trading buyer), `component`
(`POST /api/v1/match`, wiring).
"""

from node.market.demand import Demand, parse_demand
from node.market.errors import DemandError, MarketError, NoMatchError, PlanFailedError
from node.market.matching import Exclusion, Match, MatchResult, Part, match

__all__ = [
    "Demand",
    "DemandError",
    "Exclusion",
    "MarketError",
    "Match",
    "MatchResult",
    "NoMatchError",
    "Part",
    "PlanFailedError",
    "match",
    "parse_demand",
]
