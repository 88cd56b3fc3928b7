"""The express's state file: every job's record, so a restarted express resumes its jobs.

One JSON file `{"version": 1, "jobs": [JobRecord, ...]}`, rewritten atomically (temporary file,
fsync, rename) on every state change, mode 0600 (it holds the storage tokens). Finished jobs beyond
the newest `keep_finished` are dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from connectors.express.jobs import TERMINAL, JobRecord


class StateFileError(Exception):
    """The state file exists but cannot be read as the express's jobs."""


class JobStore:
    """Reads and writes the state file at `path`."""

    def __init__(self, path: Path, keep_finished: int = 64) -> None:
        self.path = path
        self.keep_finished = keep_finished

    def load(self) -> list[JobRecord]:
        """Every stored job (none if the file does not exist yet)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            document = json.loads(text)
            return [JobRecord.model_validate(item) for item in document["jobs"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"{self.path} is not an express state file: {exc}") from None

    def save(self, records: Iterable[JobRecord]) -> list[JobRecord]:
        """Store `records` (minus the oldest finished ones past the limit); returns what was kept."""
        ordered = sorted(records, key=lambda r: r.created_ms)
        finished = [r for r in ordered if r.state in TERMINAL]
        dropped = {r.id for r in finished[: max(0, len(finished) - self.keep_finished)]}
        kept = [r for r in ordered if r.id not in dropped]
        body = json.dumps({"version": 1, "jobs": [r.model_dump(mode="json") for r in kept]})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        return kept
