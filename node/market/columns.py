"""The offer view as columns (NumPy arrays), and the demand's rules checked over all of them at once.

Matching one demand over a national market (100,000 offers) in under 100 ms cannot afford a Python
call per offer, so the rules of `node.market.matching` are applied here column by column:

- numbers (price, free units, sizes, score, age) are int64 columns; an offer whose number is not a
  non-negative integer is `bad_offer` once, when the columns are built;
- text fields (source, currency, chips, region, tag sets, site) are coded: each distinct value is
  judged once per demand and the verdict spread to every offer holding it;
- every offer gets the index of the first rule of `REASONS` it breaks (the same order as
  `matching`), or -1 when it satisfies the demand; the message of an exclusion that is shown comes
  from `matching.exclusion_reason` on that one offer, so the words stay those of one piece of code.

A test checks, offer by offer, that these reasons are those `matching` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from connectors.frameworks import NoImage, resolve
from ledger.records import MAX_AMOUNT
from node.market.demand import Demand
from node.market.matching import _FLOORS, _INT_FIELDS, REASONS
from node.offers import OfferRow

Ints = npt.NDArray[np.int64]
Codes = npt.NDArray[np.int32]
Mask = npt.NDArray[np.bool_]
_CAP = 2**62  # numbers above it cannot satisfy any demand (MAX_AMOUNT is 2**53 - 1); kept as _CAP
_R = {reason: index for index, reason in enumerate(REASONS)}


def _coded(values: Sequence[Hashable]) -> tuple[Codes, list[Any]]:
    """Each value's index in the list of distinct values (in order of first appearance)."""
    distinct = list(dict.fromkeys(values))
    index = {value: code for code, value in enumerate(distinct)}
    return np.fromiter(map(index.__getitem__, values), np.int32, len(values)), distinct


def _spread(codes: Codes, distinct: list[Any], verdict: Callable[[Any], bool]) -> Mask:
    """`verdict` of each distinct value, per offer."""
    per_value = np.fromiter((verdict(v) for v in distinct), np.bool_, len(distinct))
    return per_value[codes] if len(distinct) else np.zeros(len(codes), np.bool_)


def site_of(offer: OfferRow) -> str | None:
    """The network site an offer declares: the first of its catalog's `networks` (None if none)."""
    networks = offer.get("networks")
    if isinstance(networks, list) and networks and isinstance(networks[0], str):
        return networks[0]
    return None


def _number(value: Any) -> int:
    return min(value, _CAP) if type(value) is int and value >= 0 else -1


def _int_column(values: list[Any]) -> Ints:
    """`values` as int64, -1 for any that is not a non-negative int (those above _CAP capped);
    at C speed when every value is an int that fits."""
    if set(map(type, values)) <= {int}:
        try:
            column = np.array(values, dtype=np.int64)
        except OverflowError:
            pass
        else:
            column[column < 0] = -1
            return np.minimum(column, _CAP)
    return np.fromiter((_number(v) for v in values), np.int64, len(values))


@dataclass(frozen=True)
class OfferColumns:
    """The rows of an offer view and their columns; `site_codes` index `sites` (-1: no site)."""

    rows: Sequence[OfferRow]
    numbers: dict[str, Ints]  # _INT_FIELDS, with -1 where the value is not a non-negative int
    score: Ints  # -1 where the offer has no score
    age: Ints  # confirmed age (s), -1 where it is not an int
    age_s: Ints  # age since the catalog was received (s), as rankings break ties with it
    expired: Mask
    bad: Mask
    text: dict[
        str, tuple[Codes, list[Any]]
    ]  # source, partner, currency, chip_vendor, chip_model, region, tags
    sites: list[str]
    site_codes: Codes
    tie: Ints  # rank of (source, offer id): the last tie-breaker of every ranking

    def __len__(self) -> int:
        return len(self.rows)


def build_columns(rows: Sequence[OfferRow], site: Callable[[OfferRow], str | None] = site_of) -> OfferColumns:
    """The columns of `rows` (built once per offer view, then matched against many demands);
    `site` says where each offer is (by default the site its catalog declares)."""
    n = len(rows)
    numbers = {name: _int_column([row.get(name) for row in rows]) for name in _INT_FIELDS}
    bad = np.zeros(n, np.bool_)
    for column in numbers.values():
        bad |= column < 0
    bad |= np.fromiter((type(row.get("currency")) is not str for row in rows), np.bool_, n)
    score = np.fromiter(
        (s if type(s := row.get("metric_score")) is int and s >= 0 else -1 for row in rows), np.int64, n
    )
    ages = (row.get("confirmed_age_s", row.get("age_s", 0)) for row in rows)
    age = np.fromiter((a if type(a) is int else -1 for a in ages), np.int64, n)
    age_s = _int_column([row.get("age_s") or 0 for row in rows])
    expired = np.fromiter((bool(row.get("catalog_expired")) for row in rows), np.bool_, n)
    text = {
        "source": _coded([str(row.get("source", "")) for row in rows]),
        "partner": _coded([row.get("partner") for row in rows]),
        "currency": _coded(
            [row.get("currency") if type(row.get("currency")) is str else None for row in rows]
        ),
        "chip_vendor": _coded([str(row.get("chip_vendor", "")) for row in rows]),
        "chip_model": _coded([str(row.get("chip_model", "")) for row in rows]),
        "region": _coded([row.get("region") for row in rows]),
        "tags": _coded([tuple(row.get("tags") or ()) for row in rows]),
    }
    sites = _coded([site(row) for row in rows])
    known = [s for s in sites[1] if s is not None]
    remap = np.array([known.index(s) if s is not None else -1 for s in sites[1]], np.int32)
    site_codes = remap[sites[0]] if len(sites[1]) else np.zeros(n, np.int32)
    # Ties fall to (source, offer id) in Python's string order, which NumPy's unicode order is.
    source_codes, source_values = text["source"]
    source_rank = np.argsort(np.argsort(np.array(source_values, dtype=str)))
    ids = np.array([str(row.get("id", "")) for row in rows], dtype=str)
    order = np.lexsort((ids, source_rank[source_codes])) if n else np.zeros(0, np.intp)
    tie = np.empty(n, np.int64)
    tie[order] = np.arange(n, dtype=np.int64)
    return OfferColumns(rows, numbers, score, age, age_s, expired, bad, text, known, site_codes, tie)


def _differs(folded: str) -> Callable[[Any], bool]:
    return lambda value: str(value).casefold() != folded


def reasons(demand: Demand, columns: OfferColumns, currency: str) -> npt.NDArray[np.int16]:
    """Per offer, the index in `REASONS` of the first rule it breaks, -1 if it satisfies the demand."""
    d, n = demand, len(columns)
    out = np.full(n, -1, np.int16)
    broken: list[tuple[str, Mask]] = [("bad_offer", columns.bad)]

    def text(field: str, verdict: Callable[[Any], bool]) -> Mask:
        return _spread(*columns.text[field], verdict)

    if d.sources is not None:
        partners = columns.text["partner"]
        source_codes, source_values = columns.text["source"]
        # allows_source depends on source and partner together; both are coded, so judge the pairs.
        pair_codes, pairs = _coded(list(zip(source_codes.tolist(), partners[0].tolist(), strict=True)))
        broken.append(
            (
                "source_excluded",
                _spread(
                    pair_codes, pairs, lambda p: not d.allows_source(source_values[p[0]], partners[1][p[1]])
                ),
            )
        )
    broken.append(("catalog_expired", columns.expired))
    if d.max_age_s is not None:
        broken.append(("catalog_stale", (columns.age < 0) | (columns.age > d.max_age_s)))
    currency_ok = d.currency in (None, currency)
    broken.append(("currency", text("currency", lambda c: c != currency or not currency_ok)))
    for field, asked in (("chip_vendor", d.chip_vendor), ("chip_model", d.chip_model)):
        if asked is not None:
            broken.append(("chip_mismatch", text(field, _differs(asked.casefold()))))
    if d.framework is not None:
        framework = d.framework
        broken.append(
            (
                "no_framework_image",
                text("chip_model", lambda chip: isinstance(resolve(framework, chip), NoImage)),
            )
        )
    for floor, field, _ in _FLOORS:
        least = getattr(d, floor)
        if least is not None:
            broken.append(("too_small", columns.numbers[field] < least))
    if d.regions is not None:
        regions = frozenset(d.regions)
        broken.append(("region", text("region", lambda r: r not in regions)))
    if d.tags:
        broken.append(("tags", text("tags", lambda tags: any(t not in tags for t in d.tags))))
    price = columns.numbers["price_per_unit_hour"]
    if d.max_price_per_unit_hour is not None:
        broken.append(("price_above_max", price > d.max_price_per_unit_hour))
    if d.min_metric_score is not None:
        broken.append(("no_metric_score", columns.score < 0))
        broken.append(("metric_below_min", columns.score < d.min_metric_score))
    size = d.units * d.hours
    broken.append(("bad_amount", (price < 1) | (price > MAX_AMOUNT // size)))
    needed = 1 if d.split else d.units
    broken.append(("not_enough_free_units", columns.numbers["free_units"] < needed))
    # Later rules first, so that an earlier rule an offer also breaks overwrites them.
    for reason, mask in reversed(broken):
        out[mask] = _R[reason]
    return out
