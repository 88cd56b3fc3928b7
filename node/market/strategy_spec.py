"""What a scheduling strategy is (调度管理), with no I/O: a kind, its parameters, checked whole.

Kinds (the formulas are in node.market.strategies and docs/scheduling.md):

| kind | parameters (defaults) |
|---|---|
| `cost`, `performance`, `value` | none: the market's objectives |
| `nearest` | `max_latency_ms` (50): the bound on the traffic-weighted latency to the users' sites |
| `coschedule` | `minimise`: `time` (default), `cost` or `weighted`; `time_weight`, `cost_weight` (1, 1) |
| `composite` | `weights`: `cost`, `performance`, `latency`, `load` (1 each), non-negative, not all zero |

Every kind is also a built-in strategy of the same name (version 0) with its defaults, so a demand
can say `"strategy": "nearest"` without anything registered; a registered strategy of another name
has versions 1, 2, ... each with its own parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from node.market.errors import StrategyError

Kind = Literal["cost", "performance", "value", "nearest", "coschedule", "composite"]
KINDS: tuple[Kind, ...] = ("cost", "performance", "value", "nearest", "coschedule", "composite")
TERMS = ("cost", "performance", "latency", "load")
MINIMISE = ("time", "cost", "weighted")
DEFAULT_MAX_LATENCY_MS = 50
MAX_WEIGHT = 10**6


@dataclass(frozen=True)
class Strategy:
    """A strategy as registered: name, version (0 for a built-in), kind and checked parameters."""

    name: str
    version: int
    kind: Kind
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """`name@version`, as orders record it."""
        return f"{self.name}@{self.version}"

    def view(self) -> dict[str, Any]:
        """The strategy as the API shows it."""
        return {"name": self.name, "version": self.version, "kind": self.kind, "params": dict(self.params)}


def _weight(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StrategyError(where, f"must be a number, got {value!r}")
    if not 0 <= value <= MAX_WEIGHT or value != value:
        raise StrategyError(where, f"must be between 0 and {MAX_WEIGHT}, got {value!r}")
    return float(value)


def _only(params: Mapping[str, Any], allowed: tuple[str, ...], kind: str) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        known = ", ".join(allowed) or "none"
        raise StrategyError(f"params.{extra[0]}", f"is not a parameter of {kind} (its parameters: {known})")


def check_params(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters of a `kind` strategy with defaults filled in; StrategyError naming the first bad one."""
    if kind not in KINDS:
        raise StrategyError("kind", f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    given = dict(params or {})
    if kind in ("cost", "performance", "value"):
        _only(given, (), kind)
        return {}
    if kind == "nearest":
        _only(given, ("max_latency_ms",), kind)
        bound = given.get("max_latency_ms", DEFAULT_MAX_LATENCY_MS)
        if isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= 10**6:
            raise StrategyError("params.max_latency_ms", f"must be an integer 0..1000000, got {bound!r}")
        return {"max_latency_ms": bound}
    if kind == "coschedule":
        _only(given, ("minimise", "time_weight", "cost_weight"), kind)
        minimise = given.get("minimise", "time")
        if minimise not in MINIMISE:
            raise StrategyError("params.minimise", f"must be one of {', '.join(MINIMISE)}, got {minimise!r}")
        weights = {w: _weight(f"params.{w}", given.get(w, 1)) for w in ("time_weight", "cost_weight")}
        if minimise == "weighted" and not any(weights.values()):
            raise StrategyError("params", "time_weight and cost_weight are both zero")
        return {"minimise": minimise, **weights}
    _only(given, ("weights",), kind)
    raw = given.get("weights", dict.fromkeys(TERMS, 1))
    if not isinstance(raw, Mapping):
        raise StrategyError("params.weights", "must be an object of weights by term")
    _only(cast(Mapping[str, Any], raw), TERMS, "composite weights")
    weights = {term: _weight(f"params.weights.{term}", raw.get(term, 0)) for term in TERMS}
    if not any(weights.values()):
        raise StrategyError("params.weights", "are all zero; at least one term needs a weight")
    return {"weights": weights}


def builtin(kind: str) -> Strategy:
    """The built-in strategy of a kind (version 0, default parameters)."""
    checked = check_params(kind, None)
    return Strategy(kind, 0, cast(Kind, kind), checked)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """(`name`, version or None) of `name` or `name@version`."""
    name, _, version = ref.partition("@")
    return name, int(version) if version else None
