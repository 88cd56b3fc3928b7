"""A demand without a strategy matched over the offer columns (node.market.columns): the same
`MatchResult` as `node.market.matching.match` gives over the same rows — every match in the
market's order, every exclusion with its reason and message (or, for an answer, the first few of
each reason and how many there were), the split plan — with the rules checked column by column
instead of with a Python call per offer.

Only the answer's own objects are made per offer: a `Match` for each candidate and an
`Exclusion` for each offer left out (its message from `matching`'s rules on that one row, so the
words stay those of one piece of code). The ranking is a NumPy sort for `cost` and `performance`
(integer columns, ties by age then source and offer id, as `matching.rank_key`); `value` compares
score per price exactly in integers, so its candidates are sorted by `rank_key` itself.
"""

from __future__ import annotations

import numpy as np

from node.market.columns import OfferColumns, reasons
from node.market.demand import Demand
from node.market.matching import REASONS, Exclusion, MatchResult, _plan, _Rules, as_match, rank_key


def _ranked(demand: Demand, columns: OfferColumns, keep: np.ndarray) -> list[int]:
    """The candidates `keep` in the market's order for the demand's objective."""
    price = columns.numbers["price_per_unit_hour"][keep]
    tail = (columns.tie[keep], columns.age_s[keep], price)
    if demand.objective == "cost":
        return [int(i) for i in keep[np.lexsort(tail)]]
    if demand.objective == "performance":
        score = columns.score[keep]
        order = np.lexsort((*tail, -np.maximum(score, 0), score < 0))
        return [int(i) for i in keep[order]]
    by_key = sorted(keep.tolist(), key=lambda i: rank_key(demand, as_match(demand, columns.rows[i])))
    return [int(i) for i in by_key]


def match_columns(
    demand: Demand, columns: OfferColumns, currency: str, shown_per_reason: int | None = None
) -> MatchResult:
    """`matching.match(demand, columns.rows, currency)`, worked out over the columns; with
    `shown_per_reason`, only the first that many exclusions of each reason are made (the answer
    counts them all in `excluded_by_reason`)."""
    codes = reasons(demand, columns, currency)
    keep = np.flatnonzero(codes < 0)
    found = [as_match(demand, columns.rows[i]) for i in _ranked(demand, columns, keep)]
    out = np.flatnonzero(codes >= 0)
    out = out[np.lexsort((columns.tie[out], codes[out]))]  # by reason, then source and offer id
    counts = None
    if shown_per_reason is not None:
        per_code = np.bincount(codes[out], minlength=len(REASONS))
        counts = {REASONS[c]: int(n) for c, n in enumerate(per_code.tolist()) if n}
        first = np.concatenate(([0], np.cumsum(per_code)[:-1]))  # where each reason's run starts
        out = out[np.arange(len(out)) - first[codes[out]] < shown_per_reason]
    rules = _Rules(demand, currency)
    excluded: list[Exclusion] = []
    for i in out.tolist():
        row = columns.rows[i]
        reason = rules.reason(row)
        if reason is None or reason[0] != REASONS[codes[i]]:  # the columns and the rules disagree
            raise RuntimeError(f"offer {i}: columns say {REASONS[codes[i]]}, the rules {reason}")
        excluded.append(Exclusion(str(row.get("source", "")), str(row.get("id", "")), *reason))
    plan = _plan(demand, found) if demand.split else None
    return MatchResult(demand, tuple(found), tuple(excluded), plan, counts)
