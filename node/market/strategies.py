"""Scheduling strategies (算网决策) as pure functions over the offer view (columns) and the network view.

Every strategy first applies the demand's rules (node.market.columns, the reasons of
node.market.matching), then ranks what is left by its own measure, smaller first; ties fall to
price, age, source and offer id as in matching. Formulas (`w` a weight, `L(u, s)` the one-way
latency of the best path from user site `u` to the offer's site `s` in the network view):

- `cost` / `performance` / `value`: the market's objectives (price; highest metric score; highest
  score per unit of price).
- `nearest`: latency = Σ_u w_u·L(u, s) / Σ_u w_u, the traffic-weighted latency to the users' sites.
  Excluded: `no_site` (the offer's site is unknown to the view), `no_path` (a user site cannot reach
  it), `too_far` (latency above the bound: the demand's `max_latency_ms`, else the strategy's).
  The nearest `too_far` offers are shown as misses.
- `coschedule` (算数协同调度): transfer_s = L(data, s) + size_mb·8 / free_mbps of the best path with
  bandwidth free (0 when the data is at the offer's site); run_s = compute_s·1000 / metric score;
  completion_s = transfer_s + run_s;
  transfer_cost = ⌈size_mb · cost per GB / 1000⌉; total_cost = units·hours·price + transfer_cost.
  `minimise`: `time` (completion, then cost), `cost` (total cost, then completion) or `weighted`:
  w_t·completion/min completion + w_c·total_cost/min total_cost over the candidates. Excluded:
  `no_site`, `no_path` (no path, or none with bandwidth free), `no_metric_score`.
- `composite`: Σ_t w_t·x_t / Σ_t w_t over the terms, each scaled to 0..1 across the candidates:
  cost = price / max price; performance = 1 − score / max score (no score: 1);
  latency = latency / max latency (as `nearest`, 0 when the demand names no user sites);
  load = 1 − free units / max free units (the busier, the higher).

Each strategy's `explain` gives a candidate's terms and `why` the message of an exclusion;
node.market.placement puts them together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from node.market.columns import OfferColumns
from node.market.demand import Demand
from node.market.errors import DemandError
from node.market.matching import REASONS
from node.market.strategy_spec import DEFAULT_MAX_LATENCY_MS, TERMS, Strategy
from node.network.view import NetworkView, Route

Floats = npt.NDArray[np.float64]
ALL_REASONS: tuple[str, ...] = (*REASONS, "no_site", "no_path", "too_far")
_R = {reason: index for index, reason in enumerate(ALL_REASONS)}
MISSES = 5


@dataclass
class Scored:
    """What a strategy computed over the candidates (arrays aligned with `index`)."""

    index: npt.NDArray[np.intp]
    primary: Floats
    secondary: Floats
    excluded: npt.NDArray[np.int16]  # per candidate: index in ALL_REASONS, -1 when kept
    explain: Callable[[int], dict[str, Any]]  # terms of offer i
    why: Callable[[int, str], str]  # message of a strategy exclusion of offer i
    misses: npt.NDArray[np.intp] | None = None


class _Positions:
    """Where offer `i` sits in the sorted candidate index (a lookup only shown candidates need)."""

    def __init__(self, index: npt.NDArray[np.intp]) -> None:
        self.index = index

    def __getitem__(self, i: int) -> int:
        return int(np.searchsorted(self.index, i))


def _site_index(view: NetworkView, columns: OfferColumns) -> npt.NDArray[np.bool_]:
    return np.array([view.knows(site) for site in columns.sites], np.bool_)


def _check_site(view: NetworkView, site: str, where: str) -> None:
    if not view.knows(site):
        known = ", ".join(view.sites[:20]) or "none"
        raise DemandError(where, f"site {site!r} is not in the network view (known sites: {known})")


def _weighted_latency(
    demand: Demand, view: NetworkView, columns: OfferColumns
) -> tuple[Floats, list[dict[str, float]]]:
    """Per site of the columns: the traffic-weighted latency (ms) to the users (inf: unreachable or
    unknown), and the latency from each user site."""
    users = demand.user_sites or ()
    for n, user in enumerate(users):
        _check_site(view, user.site, f"user_sites.{n}.site")
    total = sum(u.weight for u in users)
    weighted = np.zeros(len(columns.sites), np.float64)
    per_site: list[dict[str, float]] = [{} for _ in columns.sites]
    for user in users:
        reach = view.latencies_us(user.site)
        for code, site in enumerate(columns.sites):
            latency = reach.get(site)
            ms = math.inf if latency is None else latency / 1000
            weighted[code] += user.weight * ms / total
            per_site[code][user.site] = ms
    return weighted, per_site


def _no_site(site: str | None) -> str:
    return f"the offer's site {site!r} is not in the network view" if site else "the offer declares no site"


def _per_offer(
    per_site: Floats, columns: OfferColumns, index: npt.NDArray[np.intp], missing: float
) -> Floats:
    codes = columns.site_codes[index]
    values = np.full(len(index), missing, np.float64)
    has = codes >= 0
    values[has] = per_site[codes[has]]
    return values


def site_at(columns: OfferColumns, i: int) -> str | None:
    """The site of offer `i` (None when it has none)."""
    code = int(columns.site_codes[i])
    return columns.sites[code] if code >= 0 else None


def _nearest(
    strategy: Strategy, demand: Demand, view: NetworkView, columns: OfferColumns, index: npt.NDArray[np.intp]
) -> Scored:
    if not demand.user_sites:
        raise DemandError("user_sites", f"the {strategy.kind} strategy needs the users' sites")
    bound = demand.max_latency_ms
    if bound is None:
        bound = int(strategy.params.get("max_latency_ms", DEFAULT_MAX_LATENCY_MS))
    weighted, per_site = _weighted_latency(demand, view, columns)
    known = _site_index(view, columns)
    latency = _per_offer(weighted, columns, index, math.inf)
    site_known = _per_offer(known.astype(np.float64), columns, index, 0.0) > 0
    excluded = np.full(len(index), -1, np.int16)
    excluded[latency > bound] = _R["too_far"]
    excluded[np.isinf(latency)] = _R["no_path"]
    excluded[~site_known] = _R["no_site"]
    far = np.flatnonzero(excluded == _R["too_far"])
    misses = far[np.argsort(latency[far], kind="stable")[:MISSES]]
    position = _Positions(index)

    def explain(i: int) -> dict[str, Any]:
        code = int(columns.site_codes[i])
        return {
            "latency_ms": round(float(latency[position[i]]), 3),
            "latency_by_user_site_ms": per_site[code],
            "bound_ms": bound,
            "price_per_unit_hour": int(columns.numbers["price_per_unit_hour"][i]),
        }

    def why(i: int, reason: str) -> str:
        site = site_at(columns, i)
        if reason == "no_site":
            return _no_site(site)
        if reason == "no_path":
            return f"no path from the users' sites to {site}"
        return f"traffic-weighted latency {latency[position[i]]:.1f} ms to the users is over the bound of {bound} ms"

    return Scored(index, latency, np.zeros(len(index)), excluded, explain, why, index[misses])


def _transfer_s(route: Route | None, size_mb: int) -> float:
    """Seconds to move `size_mb` over `route` at its free bandwidth (0 within one site)."""
    if route is None:
        return math.inf
    if not route.links:
        return 0.0
    return route.latency_us / 1e6 + size_mb * 8 / route.free_mbps


def _coschedule(
    strategy: Strategy, demand: Demand, view: NetworkView, columns: OfferColumns, index: npt.NDArray[np.intp]
) -> Scored:
    if demand.data is None:
        raise DemandError("data", "the coschedule strategy needs the data's site and size")
    if demand.compute_s is None:
        raise DemandError("compute_s", "the coschedule strategy needs the run time at metric score 1000")
    data, compute_s = demand.data, demand.compute_s
    _check_site(view, data.site, "data.site")
    routes = [view.path(data.site, site, min_mbps=1) if view.knows(site) else None for site in columns.sites]
    known = _site_index(view, columns)
    transfer = np.array(
        [_transfer_s(r, data.size_mb) for r in routes],
        np.float64,
    )
    move_cost = np.array(
        [0 if r is None else -(-data.size_mb * r.cost_minor_per_gb // 1000) for r in routes], np.float64
    )
    transfer_s = _per_offer(transfer, columns, index, math.inf)
    transfer_cost = _per_offer(move_cost, columns, index, 0.0)
    site_known = _per_offer(known.astype(np.float64), columns, index, 0.0) > 0
    score = columns.score[index].astype(np.float64)
    run_s = np.where(score > 0, compute_s * 1000 / np.maximum(score, 1), math.inf)
    completion = transfer_s + run_s
    compute_cost = (demand.units * demand.hours * columns.numbers["price_per_unit_hour"][index]).astype(
        np.float64
    )
    total_cost = compute_cost + transfer_cost
    excluded = np.full(len(index), -1, np.int16)
    excluded[score <= 0] = _R["no_metric_score"]
    excluded[np.isinf(transfer_s)] = _R["no_path"]
    excluded[~site_known] = _R["no_site"]
    minimise = strategy.params.get("minimise", "time")
    kept = excluded < 0
    if minimise == "cost":
        primary, secondary = total_cost, completion
    elif minimise == "time":
        primary, secondary = completion, total_cost
    else:
        best_t = float(completion[kept].min()) if kept.any() else 1.0
        best_c = float(total_cost[kept].min()) if kept.any() else 1.0
        tw, cw = float(strategy.params["time_weight"]), float(strategy.params["cost_weight"])
        primary = tw * completion / max(best_t, 1e-9) + cw * total_cost / max(best_c, 1e-9)
        secondary = completion
    position = _Positions(index)

    def explain(i: int) -> dict[str, Any]:
        n = position[i]
        site = site_at(columns, i)
        route = routes[int(columns.site_codes[i])] if site is not None else None
        return {
            "data_site": data.site,
            "path": list(route.hops) if route else None,
            "free_mbps": route.free_mbps if route and route.links else None,  # None: no link crossed
            "transfer_s": round(float(transfer_s[n]), 3),
            "run_s": round(float(run_s[n]), 3),
            "completion_s": round(float(completion[n]), 3),
            "compute_cost": int(compute_cost[n]),
            "transfer_cost": int(transfer_cost[n]),
            "total_cost": int(total_cost[n]),
            "minimise": minimise,
            "objective": round(float(primary[n]), 3),
        }

    def why(i: int, reason: str) -> str:
        site = site_at(columns, i)
        if reason == "no_site":
            return _no_site(site)
        if reason == "no_path":
            return f"no path with bandwidth free from {data.site} to {site}"
        return "the offer has no metric score to estimate its run time from"

    return Scored(index, primary, secondary, excluded, explain, why)


def _composite(
    strategy: Strategy, demand: Demand, view: NetworkView, columns: OfferColumns, index: npt.NDArray[np.intp]
) -> Scored:
    weights: dict[str, float] = dict(strategy.params["weights"])
    excluded = np.full(len(index), -1, np.int16)
    price = columns.numbers["price_per_unit_hour"][index].astype(np.float64)
    score = columns.score[index].astype(np.float64)
    free = columns.numbers["free_units"][index].astype(np.float64)
    latency = np.zeros(len(index), np.float64)
    if demand.user_sites and weights["latency"] > 0:
        weighted, _ = _weighted_latency(demand, view, columns)
        latency = _per_offer(weighted, columns, index, math.inf)
        known = _per_offer(_site_index(view, columns).astype(np.float64), columns, index, 0.0) > 0
        excluded[np.isinf(latency)] = _R["no_path"]
        excluded[~known] = _R["no_site"]
    kept = excluded < 0

    def top(values: Floats) -> float:
        return max(float(values[kept].max()), 1e-12) if kept.any() else 1.0

    terms = {
        "cost": price / top(price),
        "performance": 1 - np.maximum(score, 0) / top(np.maximum(score, 0)),
        "latency": np.where(np.isinf(latency), 1.0, latency / top(np.where(np.isinf(latency), 0, latency))),
        "load": 1 - free / top(free),
    }
    total_weight = sum(weights.values())
    primary: Floats = np.zeros(len(index), np.float64)
    for t in TERMS:
        primary = primary + weights[t] * terms[t] / total_weight
    position = _Positions(index)
    raw = {"cost": price, "performance": score, "latency": latency, "load": free}

    def explain(i: int) -> dict[str, Any]:
        n = position[i]
        out: dict[str, Any] = {
            t: {
                "value": float(raw[t][n]) if t == "latency" else int(raw[t][n]),
                "scaled": round(float(terms[t][n]), 6),
                "weight": weights[t],
            }
            for t in TERMS
        }
        out["score"] = round(float(primary[n]), 6)
        return out

    def why(i: int, reason: str) -> str:
        site = site_at(columns, i)
        if reason == "no_site":
            return _no_site(site)
        return f"no path from the users' sites to {site}"

    return Scored(index, np.asarray(primary, np.float64), np.zeros(len(index)), excluded, explain, why)


def _objective(strategy: Strategy, columns: OfferColumns, index: npt.NDArray[np.intp]) -> Scored:
    price = columns.numbers["price_per_unit_hour"][index].astype(np.float64)
    score = columns.score[index].astype(np.float64)
    secondary = np.zeros(len(index))
    if strategy.kind == "performance":  # offers without a score after those with one
        primary = np.where(score >= 0, -score, math.inf)
    elif strategy.kind == "value":
        primary = np.where(score >= 0, -score / np.maximum(price, 1), math.inf)
    else:
        primary = price

    def explain(i: int) -> dict[str, Any]:
        s = int(columns.score[i])
        p = int(columns.numbers["price_per_unit_hour"][i])
        terms: dict[str, Any] = {"price_per_unit_hour": p, "metric_score": s if s >= 0 else None}
        if strategy.kind == "value" and s >= 0:
            terms["score_per_price"] = s / p
        return terms

    return Scored(index, primary, secondary, np.full(len(index), -1, np.int16), explain, lambda _i, r: r)


def score(
    strategy: Strategy, demand: Demand, view: NetworkView, columns: OfferColumns, index: npt.NDArray[np.intp]
) -> Scored:
    """The strategy's measure over the candidates `index` (those the demand's rules keep)."""
    if strategy.kind == "nearest":
        return _nearest(strategy, demand, view, columns, index)
    if strategy.kind == "coschedule":
        return _coschedule(strategy, demand, view, columns, index)
    if strategy.kind == "composite":
        return _composite(strategy, demand, view, columns, index)
    return _objective(strategy, columns, index)
