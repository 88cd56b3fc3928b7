"""Config sections of supervision: `[supervision]` and `[[supervisors]]` (see node.config).

`[[supervisors]]` are the supervisors this node reports to, each pinned by name, URL and public key
like a partner; `cpnode supervisors add` pins more in the database. `[supervision]` sets how often
reports are made and, on a node run with the `supervisor` role, when a node counts as stopped and
how often its catalog is compared with its reports.
"""

from __future__ import annotations

from pydantic import Field

from node.config_fields import ConfigSection, NodeName, NodeUrl, PublicKey


class SupervisionSection(ConfigSection):
    """`[supervision]`: reporting (every node) and checking (supervisors)."""

    report_interval_s: int = Field(default=300, ge=1, le=86_400)
    # Undelivered reports sent per supervisor and round, oldest first (a supervisor back after an
    # outage receives the backlog over several rounds).
    max_reports_per_round: int = Field(default=50, ge=1, le=10_000)
    # Supervisor side: a node is flagged `stopped` after this many of its intervals without a report.
    stale_intervals: int = Field(default=3, ge=1, le=1000)
    check_interval_s: float = Field(default=300.0, ge=1, le=86_400)


class SupervisorSection(ConfigSection):
    """One `[[supervisors]]` entry: a supervisor this node reports to."""

    name: NodeName
    url: NodeUrl
    key: PublicKey
