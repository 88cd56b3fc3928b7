"""A migration as stored (node.migration.tables maps it to a row), with no I/O.

Times are UTC epoch milliseconds. `path`, `plan`, `checkpoint` and `progress` are JSON objects;
`undo` lists the undo steps already done (node.migration.machine.UNDO_ORDER). No secret is kept:
storage tokens are asked of the pools when they are needed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from node.migration.machine import MigrationState, UndoStep

# A migration id also names its destination instance (`mig-ID`, a pool instance name of at most 63
# characters) and its express jobs (`ID.tN`).
MIGRATION_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,58}$")
INSTANCE_PREFIX = "mig-"


@dataclass(frozen=True)
class Migration:
    """A row of `migrations`."""

    id: str
    state: MigrationState
    source_pool: str
    source_instance: str
    task_id: str | None
    destination_pool: str | None
    destination_region: str | None
    destination_flavor: str | None
    destination_instance: str | None
    network: str | None
    source_site: str | None
    destination_site: str | None
    bandwidth_mbps: int
    path_id: str | None
    path: dict[str, Any] | None
    path_reprovisions: int
    plan: dict[str, Any] | None
    checkpoint: dict[str, Any] | None
    source_stopped_ms: int | None
    express_job: str | None
    partner: str | None  # the destination is this partner's pool, bought as a task order
    order_id: str | None  # that order (its trade id at the partner)
    transfer_attempts: int
    transfer_resumes: int
    progress: dict[str, Any] | None
    committed_ms: int | None
    destination_started_ms: int | None
    undo: list[UndoStep]
    reason: str | None
    last_error: str | None
    attempts: int
    version: int
    created_ms: int
    updated_ms: int

    @property
    def destination_name(self) -> str:
        """The name the destination instance is created under (how a retried create finds it)."""
        return INSTANCE_PREFIX + self.id

    @property
    def state_bytes(self) -> int | None:
        """Bytes of the checkpointed state files (None before the checkpoint)."""
        if self.checkpoint is None:
            return None
        return sum(int(item["size_bytes"]) for item in self.checkpoint["files"])

    @property
    def downtime_ms(self) -> int | None:
        """From the source stopping to the destination running (None until both happened)."""
        if self.source_stopped_ms is None or self.destination_started_ms is None:
            return None
        return max(0, self.destination_started_ms - self.source_stopped_ms)

    def view(self) -> dict[str, Any]:
        """What the API shows of a migration (the checkpoint's files, not its chunk hashes)."""
        shown = asdict(self)
        if self.checkpoint is not None:
            manifest = self.checkpoint.get("manifest") or {}
            shown["checkpoint"] = {
                "seq": self.checkpoint["seq"],
                "files": self.checkpoint["files"],
                "chunk_bytes": manifest.get("chunk_bytes"),
                "chunks": sum(len(f["chunks"]) for f in manifest.get("files", [])),
            }
        return {**shown, "state_bytes": self.state_bytes, "downtime_ms": self.downtime_ms}
