"""Metering (pure): what a run used, in seconds, and what that costs, in minor units.

Rules:
- A run's usage is the time its program ran: from the pool's `started_ms` to its `ended_ms`,
  counted in started seconds (1 ms is 1 s), never more than the task's limit (its `max_duration_s`,
  itself at most the ordered hours). A program that never started (an input failed its hash, the
  command could not run, the task was stopped first) used nothing.
- A run the pool lost (the pool restarted under it) is counted up to the last time the node saw it
  running, not up to when the pool noticed: the time in between nobody can say it ran.
- Its cost is prorated to the second (node.trading.rules.usage_amount): units × price per
  unit-hour × seconds / 3600, rounded up to the minor unit, never more than the hours bought.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Run:
    """What a pool reported of a run (UTC epoch ms), and the node's last sight of it running."""

    started_ms: int | None
    ended_ms: int | None
    end_reason: str | None = None
    seen_running_ms: int | None = None


def run_limit_s(max_duration_s: int | None, hours: int) -> int:
    """The longest a task may run: its own limit, and never beyond the hours bought."""
    bought = hours * SECONDS_PER_HOUR
    return bought if max_duration_s is None else min(max_duration_s, bought)


def used_seconds(run: Run, limit_s: int) -> int:
    """The seconds a run used (see the module docstring)."""
    if run.started_ms is None:
        return 0
    end = run.ended_ms
    if run.end_reason == "lost":
        end = run.seen_running_ms if run.seen_running_ms is not None else run.started_ms
    if end is None:
        return 0
    ran_ms = max(0, end - run.started_ms)
    return min(-(-ran_ms // 1000), limit_s)
