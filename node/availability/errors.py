"""The planner's errors: one root, a ValueError, so callers can catch bad input in one place."""

from __future__ import annotations


class AvailabilityError(ValueError):
    """Root of every planner error: the input cannot be planned as given."""


class ArchitectureError(AvailabilityError):
    """An architecture (file or data) is malformed: names the offending place."""


class PlanInputError(AvailabilityError):
    """A planning parameter (backups, target, strategy, limit) is out of range."""
