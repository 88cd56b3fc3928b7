"""Availability planning (seed §3–5): group each module's sub-modules into microservices, each run
as k = backups + 1 instances, so that the platform meets a target with as few microservices as
possible. Pure maths; `architecture.load_architecture` is the only function that reads a file.
"""

from node.availability.architecture import load_architecture, parse_architecture, with_availability
from node.availability.errors import ArchitectureError, AvailabilityError, PlanInputError
from node.availability.grouping import DEFAULT_EXACT_LIMIT, module_table
from node.availability.model import (
    Architecture,
    Module,
    ModulePlan,
    Plan,
    Submodule,
    grouping_availability,
    meets,
    service_availability,
)
from node.availability.montecarlo import MonteCarloResult, simulate
from node.availability.paper import PAPER_TABLE1, format_percent, plan_paper
from node.availability.solver import STRATEGIES, make_plan, plan_full, plan_none, plan_optimal

__all__ = [
    "DEFAULT_EXACT_LIMIT",
    "PAPER_TABLE1",
    "STRATEGIES",
    "Architecture",
    "ArchitectureError",
    "AvailabilityError",
    "Module",
    "ModulePlan",
    "MonteCarloResult",
    "Plan",
    "PlanInputError",
    "Submodule",
    "format_percent",
    "grouping_availability",
    "load_architecture",
    "make_plan",
    "meets",
    "module_table",
    "parse_architecture",
    "plan_full",
    "plan_none",
    "plan_optimal",
    "plan_paper",
    "service_availability",
    "simulate",
    "with_availability",
]
