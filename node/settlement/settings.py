"""Config section of the ledger component: `[ledger]` (see node.config).

[ledger]
checkpoint_every_transfers = 1000   # sign a checkpoint after this many new transfers…
checkpoint_every_s = 60             # …or this long after the last one, if anything is new
sweep_every_s = 5                   # expire holds whose deadline has passed this often
"""

from __future__ import annotations

from pydantic import Field

from node.config_fields import ConfigSection


class LedgerSection(ConfigSection):
    """`[ledger]`: when checkpoints are signed and how often expired holds are swept."""

    checkpoint_every_transfers: int = Field(default=1000, ge=1, le=10_000_000)
    checkpoint_every_s: float = Field(default=60.0, gt=0, le=86_400)
    sweep_every_s: float = Field(default=5.0, gt=0, le=3_600)

    @property
    def checkpoint_poll_s(self) -> float:
        """How often the checkpoint job looks whether one is due (at least once a second)."""
        return min(1.0, self.checkpoint_every_s)
