"""When a service grows by one replica (scale-out), with no I/O.

A `ScaleWatch` is fed the service's load at each health round: the average in-flight requests per
healthy replica. Once that stays over the service's threshold for its whole window, and the service
is below its `max_replicas`, it says to add one replica, then waits a whole new window (the new
replica must start and take its share) before it may say so again. A threshold of 0 turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScaleWatch:
    """The scale-out decision of one service (mutable: the time its load went over the threshold)."""

    threshold: float
    window_s: float
    over_since_s: float | None = None

    def observe(self, now_s: float, in_flight_per_replica: float, replicas: int, max_replicas: int) -> bool:
        """Feed one sample; True when a replica should be added now."""
        if self.threshold <= 0 or in_flight_per_replica <= self.threshold:
            self.over_since_s = None
            return False
        if self.over_since_s is None:
            self.over_since_s = now_s
        if replicas >= max_replicas or now_s - self.over_since_s < self.window_s:
            return False
        self.over_since_s = now_s  # a new window before the next one
        return True


def load_per_replica(in_flight: list[int]) -> float:
    """The average in-flight requests over the healthy replicas' counts (0 when there are none)."""
    return sum(in_flight) / len(in_flight) if in_flight else 0.0
