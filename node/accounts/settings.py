"""Config section of accounts: `[accounts]` (see node.config).

[accounts]
assertion_validity_s = 300    # how long an assertion this node issues for its consumer is valid
federated = "any"             # partners' consumers accepted here: "any", "verified" (real-name
                              # verified at their home node) or "none"
status_check_s = 0            # how often partners are asked about their consumers seen here
                              # (0: every federation.sync_interval_s)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from federation.assertions import MAX_ASSERTION_S
from node.config_fields import ConfigSection


class AccountsSection(ConfigSection):
    """`[accounts]`: assertions for this node's consumers, and partners' consumers accepted here."""

    assertion_validity_s: int = Field(default=300, ge=10, le=MAX_ASSERTION_S)
    federated: Literal["any", "verified", "none"] = "any"
    status_check_s: float = Field(default=0, ge=0, le=86_400)
