"""Matching a demand against offers, with no I/O: filter, rank, and (with `split`) decompose.

Rules:
- Each offer is checked against the demand in the order of `REASONS`; the first broken rule is
  the reason it is excluded (a machine-readable code and a message).
- Without `split` an offer needs free units for the whole demand; with it, one free unit makes it
  a candidate for a part.
- Ranking is deterministic. `cost`: lowest price. `performance`: highest metric score, then price.
  `value`: highest metric score per unit of price (compared exactly, in integers). Offers without a
  score rank after those with one. Ties fall to price, then age, then source, then offer id.
- With `split` the plan is the best match that takes every unit alone, if there is one; otherwise
  the ranked candidates are taken greedily, each for as many units as it has free, until the units
  are covered (for `cost`, and offers that share no capacity, that is the cheapest cover, since every
  part costs price × units × hours). Offers of one source that share a capacity group (node.offers) draw on one budget: the parts
  never take more of the group than its `capacity_free`.
- Money is integer minor units: total = units × hours × price per unit-hour; never a float.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from connectors.frameworks import NoImage, resolve
from ledger.records import MAX_AMOUNT
from node.market.demand import Demand
from node.money import format_rate
from node.offers import OfferRow, group_of

# Reason codes in the order they are checked.
REASONS: tuple[str, ...] = (
    "bad_offer",
    "source_excluded",
    "catalog_expired",
    "catalog_stale",
    "currency",
    "chip_mismatch",
    "no_framework_image",
    "too_small",
    "region",
    "tags",
    "price_above_max",
    "no_metric_score",
    "metric_below_min",
    "bad_amount",
    "not_enough_free_units",
)
# score·_SCALE // price orders score-per-price ratios exactly: a match's price is at most MAX_AMOUNT
# (its total is), so two different ratios differ by at least 1/MAX_AMOUNT², i.e. by 2 once scaled.
_SCALE = 2 * MAX_AMOUNT**2
_INT_FIELDS = ("chips_per_unit", "cpus", "memory_mib", "storage_gib", "free_units", "price_per_unit_hour")
FloorField = Literal["chips_per_unit", "cpus", "memory_mib", "storage_gib"]
_FLOORS: tuple[tuple[str, FloorField, str], ...] = (
    ("min_chips_per_unit", "chips_per_unit", "chips per unit"),
    ("min_cpus", "cpus", "CPUs"),
    ("min_memory_mib", "memory_mib", "MiB of memory"),
    ("min_storage_gib", "storage_gib", "GiB of storage"),
)


@dataclass(frozen=True)
class Match:
    """An offer that satisfies the demand: where it is, its price and the demand's total there."""

    source: str
    offer_id: str
    price_per_unit_hour: int
    total: int  # units × hours × price, minor units
    free_units: int
    metric_score: int | None
    age_s: int
    offer: OfferRow

    def view(self) -> dict[str, Any]:
        """The match as the API shows it."""
        return {
            "source": self.source,
            "offer_id": self.offer_id,
            "partner": self.offer.get("partner"),
            "pool": self.offer.get("pool"),
            "region": self.offer.get("region"),
            "chip_vendor": self.offer.get("chip_vendor"),
            "chip_model": self.offer.get("chip_model"),
            "chips_per_unit": self.offer.get("chips_per_unit"),
            "price_per_unit_hour": self.price_per_unit_hour,
            "currency": self.offer.get("currency"),
            "total": self.total,
            "free_units": self.free_units,
            "metric_score": self.metric_score,
            "age_s": self.age_s,
        }


@dataclass(frozen=True)
class Exclusion:
    """An offer left out, and why."""

    source: str
    offer_id: str
    reason: str
    message: str

    def view(self) -> dict[str, str]:
        """The exclusion as the API shows it."""
        return {
            "source": self.source,
            "offer_id": self.offer_id,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True)
class Part:
    """One part of a decomposition: units of one offer."""

    source: str
    offer_id: str
    units: int
    price_per_unit_hour: int
    total: int

    def view(self) -> dict[str, Any]:
        """The part as the API shows it."""
        return {
            "source": self.source,
            "offer_id": self.offer_id,
            "units": self.units,
            "price_per_unit_hour": self.price_per_unit_hour,
            "total": self.total,
        }


@dataclass(frozen=True)
class MatchResult:
    """Ranked matches, exclusions, and with `split` the plan (empty when the units cannot be covered)."""

    demand: Demand
    matches: tuple[Match, ...]
    excluded: tuple[Exclusion, ...]
    plan: tuple[Part, ...] | None
    excluded_by_reason: dict[str, int] | None = None  # set when `excluded` shows only some of each

    @property
    def exclusion_counts(self) -> dict[str, int]:
        """How many offers each reason excluded (all of them, whether shown or not)."""
        if self.excluded_by_reason is not None:
            return self.excluded_by_reason
        counts: dict[str, int] = {}
        for exclusion in self.excluded:
            counts[exclusion.reason] = counts.get(exclusion.reason, 0) + 1
        return counts

    @property
    def plan_total(self) -> int:
        """What the plan costs in all (0 without one)."""
        return sum(part.total for part in self.plan or ())

    def view(self, limit: int | None = None) -> dict[str, Any]:
        """The result as `POST /api/v1/match` answers it: every match, or with `limit` the first
        that many and how many there are (`candidates`)."""
        shown = self.matches if limit is None else self.matches[:limit]
        body: dict[str, Any] = {
            "demand": self.demand.model_dump(),
            **({} if limit is None else {"candidates": len(self.matches)}),
            "matches": [match.view() for match in shown],
            "excluded_by_reason": self.exclusion_counts,
            "excluded": [exclusion.view() for exclusion in self.excluded],
        }
        if self.plan is not None:
            body["plan"] = [part.view() for part in self.plan]
            body["plan_total"] = self.plan_total
            body["plan_covers"] = sum(part.units for part in self.plan) == self.demand.units
        return body


def _score(offer: OfferRow) -> int | None:
    score = offer.get("metric_score")
    return score if type(score) is int and score >= 0 else None


class _Rules:
    """The demand's rules prepared once for checking many offers (only the constraints it states)."""

    def __init__(self, demand: Demand, currency: str) -> None:
        self.demand = demand
        self.currency = currency
        self.currency_ok = demand.currency in (None, currency)
        self.chips = [
            (field, asked, asked.casefold())
            for field, asked in (("chip_vendor", demand.chip_vendor), ("chip_model", demand.chip_model))
            if asked is not None
        ]
        self.floors = [
            (field, least, what)
            for floor, field, what in _FLOORS
            if (least := getattr(demand, floor)) is not None
        ]
        self.regions = None if demand.regions is None else frozenset(demand.regions)
        self.needed = 1 if demand.split else demand.units
        self.size = demand.units * demand.hours
        self._images: dict[str, str | None] = {}  # chip → why it has no image (None: it has one)

    def no_image(self, chip: str) -> str | None:
        """Why the demand's framework has no image for `chip` (None when it has one, or none is asked)."""
        framework = self.demand.framework
        if framework is None:
            return None
        if chip not in self._images:
            found = resolve(framework, chip)
            self._images[chip] = found.message if isinstance(found, NoImage) else None
        return self._images[chip]

    def reason(self, offer: OfferRow) -> tuple[str, str] | None:
        """(reason, message) for the first rule `offer` breaks, None if it satisfies the demand."""
        return self._where(offer) or self._what(offer) or self._terms(offer)

    def _where(self, offer: OfferRow) -> tuple[str, str] | None:
        """The offer's shape, its source and how fresh its catalog is."""
        d = self.demand
        for name in _INT_FIELDS:
            value = offer.get(name)
            if type(value) is not int or value < 0:
                return "bad_offer", f"the offer's {name} is not a non-negative integer"
        if type(offer.get("currency")) is not str:
            return "bad_offer", "the offer has no currency"
        source = str(offer.get("source", ""))
        if d.sources is not None and not d.allows_source(source, offer.get("partner")):
            return "source_excluded", f"{source} is not among the demand's sources"
        if offer.get("catalog_expired"):
            return "catalog_expired", f"the catalog from {offer.get('partner')} has expired; sync it again"
        if d.max_age_s is not None:
            age = offer.get("confirmed_age_s", offer.get("age_s", 0))
            if type(age) is not int or age > d.max_age_s:
                return (
                    "catalog_stale",
                    f"{offer.get('partner')} last confirmed its catalog {age} s ago, more than {d.max_age_s} s",
                )
        return None

    def _what(self, offer: OfferRow) -> tuple[str, str] | None:
        """The currency, chips, sizes, region and tags the demand asks for."""
        d = self.demand
        if offer["currency"] != self.currency or not self.currency_ok:
            return "currency", f"the offer is in {offer['currency']}; this node trades in {self.currency}"
        for field, asked, folded in self.chips:
            if str(offer.get(field, "")).casefold() != folded:
                return "chip_mismatch", f"{field} is {offer.get(field)!r}, the demand asks for {asked!r}"
        missing_image = self.no_image(str(offer.get("chip_model", "")))
        if missing_image is not None:
            return "no_framework_image", missing_image
        for field, least, what in self.floors:
            if offer[field] < least:
                return "too_small", f"{offer[field]} {what}, fewer than {least}"
        if self.regions is not None and offer.get("region") not in self.regions:
            return "region", f"region {offer.get('region')!r} is not among {', '.join(d.regions or ())}"
        if d.tags:
            missing = [tag for tag in d.tags if tag not in (offer.get("tags") or ())]
            if missing:
                return "tags", f"lacks tag(s) {', '.join(missing)}"
        return None

    def _terms(self, offer: OfferRow) -> tuple[str, str] | None:
        """The price, metric score, total amount and free units."""
        d = self.demand
        price = offer["price_per_unit_hour"]
        if d.max_price_per_unit_hour is not None and price > d.max_price_per_unit_hour:
            currency = offer["currency"]
            return "price_above_max", (
                f"{format_rate(price, currency, 'unit-h')} is above "
                f"{format_rate(d.max_price_per_unit_hour, currency, 'unit-h')}"
            )
        if d.min_metric_score is not None:
            score = _score(offer)
            if score is None:
                return "no_metric_score", "the offer has no metric score"
            if score < d.min_metric_score:
                return "metric_below_min", f"metric score {score} is below {d.min_metric_score}"
        total = self.size * price
        if not 1 <= total <= MAX_AMOUNT:
            return "bad_amount", f"the total {total} is outside 1..{MAX_AMOUNT} minor units"
        if offer["free_units"] < self.needed:
            return (
                "not_enough_free_units",
                f"{offer['free_units']} free units, the demand needs {self.needed}",
            )
        return None


def exclusion_reason(demand: Demand, offer: OfferRow, currency: str) -> tuple[str, str] | None:
    """(reason, message) for the first rule `offer` breaks, None if it satisfies the demand."""
    return _Rules(demand, currency).reason(offer)


def rank_key(demand: Demand, match: Match) -> tuple[Any, ...]:
    """The sort key of a match under the demand's objective (smaller ranks first)."""
    tail = (match.price_per_unit_hour, match.age_s, match.source, match.offer_id)
    score = match.metric_score
    if demand.objective == "performance":
        return (score is None, -(score or 0), *tail)
    if demand.objective == "value":
        return (score is None, -((score or 0) * _SCALE // match.price_per_unit_hour), *tail)
    return tail


def _plan(demand: Demand, ranked: list[Match]) -> tuple[Part, ...]:
    whole = next((m for m in ranked if m.free_units >= demand.units), None)
    if whole is not None:
        takes = [(whole, demand.units)]
    else:
        takes, left = [], demand.units
        budgets: dict[tuple[str, str], int] = {}  # capacity left in each (source, group) by the plan
        for candidate in ranked:
            if left == 0:
                break
            units = min(left, candidate.free_units)
            group = group_of(candidate.offer)
            if group is not None:
                key = (candidate.source, group[0])
                budget = budgets.setdefault(key, group[2])
                units = min(units, budget // group[1])
                budgets[key] = budget - units * group[1]
            if units:
                takes.append((candidate, units))
                left -= units
        if left:
            return ()
    return tuple(
        Part(m.source, m.offer_id, units, m.price_per_unit_hour, units * demand.hours * m.price_per_unit_hour)
        for m, units in takes
    )


def as_match(demand: Demand, offer: OfferRow) -> Match:
    """`offer` (one that satisfies `demand`) as a match, with the demand's total there."""
    price = offer["price_per_unit_hour"]
    return Match(
        str(offer.get("source", "")),
        str(offer.get("id", "")),
        price,
        demand.units * demand.hours * price,
        offer["free_units"],
        _score(offer),
        int(offer.get("age_s") or 0),
        offer,
    )


def match(demand: Demand, offers: Iterable[OfferRow], currency: str) -> MatchResult:
    """Rank the offers that satisfy `demand`, say why each other one does not, and plan a split.

    `offers` are rows of the merged offer view (`source`, `partner`, `age_s` and the catalog offer
    fields; `catalog_expired` set on offers of an expired catalog); `currency` is the node's
    trading currency."""
    rules = _Rules(demand, currency)
    found: list[Match] = []
    excluded: list[Exclusion] = []
    for offer in offers:
        source, offer_id = str(offer.get("source", "")), str(offer.get("id", ""))
        reason = rules.reason(offer)
        if reason is not None:
            excluded.append(Exclusion(source, offer_id, *reason))
            continue
        found.append(as_match(demand, offer))
    found.sort(key=lambda m: rank_key(demand, m))
    excluded.sort(key=lambda e: (REASONS.index(e.reason), e.source, e.offer_id))
    plan = _plan(demand, found) if demand.split else None
    return MatchResult(demand, tuple(found), tuple(excluded), plan)
