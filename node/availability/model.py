"""The availability model of seed eq. 1–7, as plain data and pure functions.

Rules:
- Sub-modules of a module run in series: a microservice holding sub-modules S is up with
  probability Π_{j∈S} a_j (eq. 3).
- A microservice runs as k = backups + 1 parallel instances: 1 − (1 − Π a_j)^k (eq. 5); the
  paper's "2 backup instances" is k = 3.
- A module is the product over its microservices, the platform the product over modules (eq. 6).
- The objective (eq. 7) counts microservices, never instances.
Availabilities are compared with `EPSILON` slack so that rounding in a different evaluation order
never flips a decision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.availability.errors import ArchitectureError, PlanInputError

EPSILON = 1e-12  # absolute slack on availabilities in [0, 1]; rounding error is ~1e-16 per operation
MAX_BACKUPS = 100


def instances(backups: int) -> int:
    """Instances per microservice for `backups` backup instances (k = backups + 1)."""
    return check_backups(backups) + 1


def check_backups(backups: int) -> int:
    """Return `backups` if it is an integer in 0..MAX_BACKUPS, else raise PlanInputError."""
    if isinstance(backups, bool) or not isinstance(backups, int) or not 0 <= backups <= MAX_BACKUPS:
        raise PlanInputError(f"backups must be an integer from 0 to {MAX_BACKUPS}, got {backups!r}")
    return backups


def check_availability(value: float, what: str = "availability") -> float:
    """Return `value` as a float if it lies in (0, 1], else raise PlanInputError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise PlanInputError(f"{what} must be a number in (0, 1], got {value!r}")
    return float(value)


def service_availability(availabilities: Iterable[float], k: int) -> float:
    """Availability of one microservice holding sub-modules in series, run as `k` instances."""
    up = math.prod(availabilities)
    return 1.0 - (1.0 - up) ** k


def grouping_availability(groups: Iterable[Iterable[float]], k: int) -> float:
    """Availability of a module whose sub-modules are grouped into microservices `groups`."""
    return math.prod(service_availability(group, k) for group in groups)


def meets(availability: float, target: float) -> bool:
    """Whether `availability` reaches `target` (with EPSILON slack for rounding)."""
    return availability >= target - EPSILON


@dataclass(frozen=True)
class Submodule:
    """One sub-module: its name and its own availability."""

    name: str
    availability: float


@dataclass(frozen=True)
class Module:
    """A module: sub-modules in series that may be grouped into microservices."""

    name: str
    submodules: tuple[Submodule, ...]

    @property
    def availabilities(self) -> tuple[float, ...]:
        """The sub-modules' availabilities in file order."""
        return tuple(sub.availability for sub in self.submodules)


@dataclass(frozen=True)
class Architecture:
    """Modules in series, with the planning defaults the file may carry."""

    name: str
    modules: tuple[Module, ...]
    backups: int | None = None
    target: float | None = None

    def __post_init__(self) -> None:
        if not self.modules:
            raise ArchitectureError(f"architecture {self.name!r} has no modules")
        module_names: set[str] = set()
        sub_names: set[str] = set()
        for module in self.modules:
            if not module.name or module.name in module_names:
                raise ArchitectureError(f"module names must be non-empty and unique, got {module.name!r}")
            module_names.add(module.name)
            if not module.submodules:
                raise ArchitectureError(f"module {module.name!r} has no sub-modules")
            for sub in module.submodules:
                if not sub.name or sub.name in sub_names:
                    raise ArchitectureError(
                        f"sub-module names must be non-empty and unique, got {sub.name!r} in {module.name!r}"
                    )
                sub_names.add(sub.name)
                check_availability(sub.availability, f"availability of sub-module {sub.name!r}")

    @property
    def submodule_count(self) -> int:
        """Total number of sub-modules (the full partition's microservice count)."""
        return sum(len(module.submodules) for module in self.modules)


@dataclass(frozen=True)
class ModulePlan:
    """How one module is grouped: each service is a tuple of sub-module names."""

    name: str
    services: tuple[tuple[str, ...], ...]
    availability: float
    exact: bool = True  # False when a large module was grouped by the bounded heuristic
    upper_bound: float | None = None  # no grouping with this many services does better (heuristic only)


@dataclass(frozen=True)
class Plan:
    """A full partition plan and what it achieves."""

    strategy: str
    architecture: str
    backups: int
    target: float
    modules: tuple[ModulePlan, ...]
    availability: float
    notes: tuple[str, ...] = ()
    availability_upper_bound: float | None = None  # set when a heuristic was used
    microservices_lower_bound: int | None = None  # set when a heuristic was used
    stats: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def microservices(self) -> int:
        """Number of microservices (backup instances not counted)."""
        return sum(len(module.services) for module in self.modules)

    @property
    def instances(self) -> int:
        """Instances per microservice (k)."""
        return self.backups + 1

    @property
    def meets_target(self) -> bool:
        """Whether the plan reaches its target availability."""
        return meets(self.availability, self.target)

    @property
    def exact(self) -> bool:
        """Whether every module's grouping is proven best for its service count."""
        return all(module.exact for module in self.modules)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (the format `cpnode deploy k8s --plan` reads)."""
        data: dict[str, Any] = {
            "strategy": self.strategy,
            "architecture": self.architecture,
            "backups": self.backups,
            "instances_per_service": self.instances,
            "target": self.target,
            "microservices": self.microservices,
            "availability": self.availability,
            "meets_target": self.meets_target,
            "exact": self.exact,
            "modules": [
                {
                    "name": module.name,
                    "availability": module.availability,
                    "exact": module.exact,
                    "services": [list(service) for service in module.services],
                    **({"upper_bound": module.upper_bound} if module.upper_bound is not None else {}),
                }
                for module in self.modules
            ],
            "notes": list(self.notes),
        }
        if self.availability_upper_bound is not None:
            data["bounds"] = {
                "availability_at_most": self.availability_upper_bound,
                "microservices_at_least": self.microservices_lower_bound,
            }
        return data


def build_plan(
    architecture: Architecture,
    strategy: str,
    backups: int,
    target: float,
    groups: Sequence[Sequence[Sequence[int]]],
    **extra: Any,
) -> Plan:
    """A Plan from per-module groupings given as sub-module indices; availabilities are recomputed."""
    k = instances(backups)
    modules = []
    for module, module_groups in zip(architecture.modules, groups, strict=True):
        avails = module.availabilities
        modules.append(
            ModulePlan(
                name=module.name,
                services=tuple(tuple(module.submodules[j].name for j in group) for group in module_groups),
                availability=grouping_availability(([avails[j] for j in g] for g in module_groups), k),
            )
        )
    return Plan(
        strategy=strategy,
        architecture=architecture.name,
        backups=backups,
        target=target,
        modules=tuple(modules),
        availability=math.prod(module.availability for module in modules),
        **extra,
    )
