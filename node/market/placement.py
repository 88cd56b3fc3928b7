"""A strategy's placement of a demand, with no I/O: the demand's rules over the offer columns, the
strategy's measure (node.market.strategies), the first candidates in order with their terms, the
exclusions counted by reason and the first of each shown with its message.

Only the candidates that can be among the first `limit` are sorted: those whose measure is at most
the limit-th smallest (`np.partition`); with `split` every candidate is ranked, and the plan made
of as few of them as it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from node.market.columns import OfferColumns, reasons
from node.market.demand import Demand
from node.market.matching import REASONS, Exclusion, Match, MatchResult, Part, _plan, _Rules, rank_key
from node.market.strategies import ALL_REASONS, Floats, Scored, score, site_at
from node.market.strategy_spec import Strategy
from node.network.view import NetworkView

SHOWN_PER_REASON = 20


@dataclass(frozen=True)
class Explained:
    """A candidate in the strategy's order, with the terms that placed it there."""

    match: Match
    site: str | None
    terms: dict[str, Any]

    def view(self) -> dict[str, Any]:
        """The candidate as the API shows it."""
        return {**self.match.view(), "site": self.site, "explain": self.terms}


@dataclass(frozen=True)
class Placement:
    """A strategy's answer: the first `limit` candidates, explained; how many there were; the
    exclusions counted by reason (up to SHOWN_PER_REASON of each shown); `nearest` misses."""

    strategy: Strategy
    demand: Demand
    candidates: tuple[Explained, ...]
    candidate_count: int
    excluded: tuple[Exclusion, ...]
    excluded_by_reason: dict[str, int]
    misses: tuple[Explained, ...]
    plan: MatchResult | None = None

    def result(self) -> MatchResult:
        """The placement as the market's match result (what orders are placed on)."""
        if self.plan is not None:
            return self.plan
        return MatchResult(self.demand, tuple(c.match for c in self.candidates), self.excluded, None)

    def view(self) -> dict[str, Any]:
        """The placement as `POST /api/v1/match` answers it for a strategy."""
        body: dict[str, Any] = {
            "strategy": self.strategy.view(),
            "demand": self.demand.model_dump(exclude_none=True),
            "candidates": self.candidate_count,
            "matches": [c.view() for c in self.candidates],
            "excluded_by_reason": self.excluded_by_reason,
            "excluded": [e.view() for e in self.excluded],
        }
        if self.misses:
            body["nearest_misses"] = [c.view() for c in self.misses]
        if self.plan is not None and self.plan.plan is not None:
            body["plan"] = [part.view() for part in self.plan.plan]
            body["plan_total"] = self.plan.plan_total
            body["plan_covers"] = sum(part.units for part in self.plan.plan) == self.demand.units
        return body


def _match(demand: Demand, columns: OfferColumns, i: int) -> Match:
    row = columns.rows[i]
    price = int(columns.numbers["price_per_unit_hour"][i])
    score = int(columns.score[i])
    return Match(
        str(row.get("source", "")),
        str(row.get("id", "")),
        price,
        demand.units * demand.hours * price,
        int(columns.numbers["free_units"][i]),
        score if score >= 0 else None,
        int(row.get("age_s") or 0),
        row,
    )


def _ranked(
    keep: npt.NDArray[np.intp], primary: Floats, secondary: Floats, columns: OfferColumns, limit: int | None
) -> npt.NDArray[np.intp]:
    """`keep` in order (primary, secondary, price, age, source and id), only the first `limit` when
    given: those whose primary is at most the limit-th smallest are the only ones that can be."""
    if limit is not None and len(keep) > limit:
        threshold = np.partition(primary, limit - 1)[limit - 1]
        near = primary <= threshold
        keep, primary, secondary = keep[near], primary[near], secondary[near]
    price = columns.numbers["price_per_unit_hour"]
    order = np.lexsort((columns.tie[keep], columns.age_s[keep], price[keep], secondary, primary))
    ranked = keep[order]
    return ranked if limit is None else ranked[:limit]


def place(
    strategy: Strategy,
    demand: Demand,
    columns: OfferColumns,
    view: NetworkView,
    currency: str,
    limit: int = 20,
) -> Placement:
    """Rank the offers of `columns` for `demand` by `strategy`; the first `limit` explained."""
    codes = reasons(demand, columns, currency)
    index = np.flatnonzero(codes < 0)
    scored = score(strategy, demand, view, columns, index)
    kept = scored.excluded < 0
    ranked = _ranked(
        index[kept], scored.primary[kept], scored.secondary[kept], columns, None if demand.split else limit
    )
    candidate_count = int(kept.sum())
    codes = codes.copy()
    codes[index[~kept]] = scored.excluded[~kept]
    shown = [int(i) for i in ranked[:limit]]
    if strategy.kind in ("cost", "performance", "value"):
        # Floats order score per price; the shown ones are put in the market's exact order.
        by_objective = demand.model_copy(update={"objective": strategy.kind})
        shown.sort(key=lambda i: rank_key(by_objective, _match(demand, columns, i)))
    candidates = tuple(
        Explained(_match(demand, columns, i), site_at(columns, i), scored.explain(i)) for i in shown
    )
    counts = np.bincount(codes[codes >= 0], minlength=len(ALL_REASONS))
    counted = {ALL_REASONS[c]: int(n) for c, n in enumerate(counts.tolist()) if n}
    excluded = _exclusions(demand, columns, codes, currency, scored)
    misses = tuple(
        Explained(_match(demand, columns, int(i)), site_at(columns, int(i)), scored.explain(int(i)))
        for i in (scored.misses if scored.misses is not None else ())
    )
    plan = None
    if demand.split:
        first = tuple(_match(demand, columns, int(i)) for i in ranked[:limit])
        plan = MatchResult(demand, first, excluded, _split_plan(demand, columns, ranked))
    return Placement(
        strategy, demand, candidates, candidate_count, excluded, dict(sorted(counted.items())), misses, plan
    )


def _split_plan(demand: Demand, columns: OfferColumns, ranked: npt.NDArray[np.intp]) -> tuple[Part, ...]:
    """`matching._plan` over the ranked candidates, making matches of only those it can look at:
    the first that takes every unit alone (found over the free-units column), else a prefix of the
    ranking, doubled until the plan covers the units or the prefix is the whole ranking (the plan
    is greedy in rank order, so a prefix that covers gives the plan the whole ranking gives)."""
    whole = np.flatnonzero(columns.numbers["free_units"][ranked] >= demand.units)
    if len(whole):
        return _plan(demand, [_match(demand, columns, int(ranked[whole[0]]))])
    free = np.cumsum(columns.numbers["free_units"][ranked])
    size = int(np.searchsorted(free, demand.units)) + 1
    while True:
        parts = _plan(demand, [_match(demand, columns, int(i)) for i in ranked[:size]])
        if parts or size >= len(ranked):
            return parts
        size *= 2


def _exclusions(
    demand: Demand, columns: OfferColumns, codes: npt.NDArray[np.int16], currency: str, scored: Scored
) -> tuple[Exclusion, ...]:
    shown: list[Exclusion] = []
    rules = _Rules(demand, currency)
    for code in np.unique(codes[codes >= 0]).tolist():
        reason = ALL_REASONS[code]
        which = np.flatnonzero(codes == code)
        if len(which) > SHOWN_PER_REASON:  # only the first few are shown: no need to sort them all
            which = which[np.argpartition(columns.tie[which], SHOWN_PER_REASON - 1)[:SHOWN_PER_REASON]]
        first = which[np.argsort(columns.tie[which], kind="stable")]
        for i in first.tolist():
            source, offer_id = str(columns.rows[i].get("source", "")), str(columns.rows[i].get("id", ""))
            if code < len(REASONS):
                found = rules.reason(columns.rows[i])
                message = found[1] if found is not None and found[0] == reason else scored.why(i, reason)
            else:
                message = scored.why(i, reason)
            shown.append(Exclusion(source, offer_id, reason, message))
    return tuple(shown)
