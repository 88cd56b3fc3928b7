"""Config section of tasks: `[tasks]` (see node.config).

[tasks]
poll_s = 0.25                 # how often a task's pool is asked how its run goes
partner_poll_s = 0.5          # how often a partner is asked about a task it runs for this node
queue_timeout_s = 3600        # how long a task waits for free capacity before it fails (no_capacity)
provision_retry_s = 60        # how long a pool that is full or unreachable is retried at provisioning
max_output_bytes = 1073741824 # the most a task's kept outputs may take on this node
partner_timeout_s = 10        # how long one call to a partner about a task may take
usage_tolerance_s = 2         # how far a partner's metered seconds may lie outside our observation
place_timeout_s = 60          # how long placing one task's order may take before it is tried again
place_attempts = 5            # placements cut off by place_timeout_s before the task fails (place_failed)
"""

from __future__ import annotations

from pydantic import Field

from node.config_fields import ConfigSection


class TasksSection(ConfigSection):
    """`[tasks]`: how tasks are followed, queued and kept."""

    poll_s: float = Field(default=0.25, ge=0.01, le=60)
    partner_poll_s: float = Field(default=0.5, ge=0.01, le=600)
    queue_timeout_s: int = Field(default=3600, ge=0, le=30 * 86_400)
    provision_retry_s: float = Field(default=60.0, ge=0, le=86_400)
    max_output_bytes: int = Field(default=1 << 30, ge=0, le=1 << 40)
    partner_timeout_s: float = Field(default=10.0, gt=0, le=600)
    usage_tolerance_s: int = Field(default=2, ge=0, le=3600)
    place_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    place_attempts: int = Field(default=5, ge=1, le=100)
