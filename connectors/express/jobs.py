"""Jobs of the data express: what a job asks for, its states as one transition table, and its record.

States and events (every transition is stored before it is acted on):

    queued     --start-->   running
    running    --complete-> completed
    running    --fatal-->   failing      (disk full, permission, manifest mismatch: cleaning up)
    failing    --cleaned--> failed       (partial files removed at the destination)
    running    --stall-->   failed       (a chunk ran out of attempts: partial uploads kept)
    failed     --resume-->  queued       (only if not fatal: goes on from the committed-chunk map)
    queued, running, failed (not fatal) --cancel--> cancelling --cleaned--> cancelled
    cancelling, cancelled --cancel--> unchanged (a second cancel is harmless)

A restarted express runs `queued` and `running` jobs again (from the destination's committed-chunk
maps) and finishes the cleanup of `failing` and `cancelling` ones.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from connectors.contract import Model, StorageEndpoint
from connectors.express.errors import JobConflict
from connectors.manifest import ChunkBytes, Manifest

JobState = Literal["queued", "running", "completed", "failing", "failed", "cancelling", "cancelled"]
JobEvent = Literal["start", "complete", "fatal", "cleaned", "stall", "resume", "cancel"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
ACTIVE: frozenset[str] = frozenset({"queued", "running"})
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")

TRANSITIONS: dict[tuple[str, str], str] = {
    ("queued", "start"): "running",
    ("running", "complete"): "completed",
    ("running", "fatal"): "failing",
    ("failing", "cleaned"): "failed",
    ("running", "stall"): "failed",
    ("failed", "resume"): "queued",
    ("queued", "cancel"): "cancelling",
    ("running", "cancel"): "cancelling",
    ("failed", "cancel"): "cancelling",
    ("cancelling", "cancel"): "cancelling",
    ("cancelling", "cleaned"): "cancelled",
    ("cancelled", "cancel"): "cancelled",
}


class InvalidTransition(JobConflict, ValueError):
    """An event the job's state does not allow."""


class JobError(Model):
    """Why a job failed (or what went wrong last): a stable code, a message, and whether it was fatal."""

    code: str
    message: str
    fatal: bool


def next_state(state: str, event: str, error: JobError | None = None) -> str:
    """The state after `event`, or InvalidTransition. A fatal failure can be neither resumed nor cancelled."""
    target = TRANSITIONS.get((state, event))
    if target is None:
        raise InvalidTransition(f"a {state} job cannot {event}")
    if state == "failed" and event in ("resume", "cancel") and (error is None or error.fatal):
        raise InvalidTransition(f"a job that failed fatally cannot {event}: its partial files are gone")
    return target


class JobSpec(Model):
    """A request to move state files from one storage endpoint to another.

    Either `manifest` (the files and their hashes, as the source built it) or none, in which case
    the express asks the source for its bucket's manifest in chunks of `chunk_bytes`."""

    id: str | None = None
    source: StorageEndpoint
    destination: StorageEndpoint
    manifest: Manifest | None = None
    # 2 × 8 MiB beat 4 × 4 MiB (the same buffer memory) in 512 MiB moves: docs/performance.md
    chunk_bytes: ChunkBytes = 8 << 20
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    rate_cap_bytes_per_s: Annotated[int, Field(ge=0, le=1 << 40)] = 0  # 0: no cap
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 8
    backoff_base_ms: Annotated[int, Field(ge=1, le=60_000)] = 250
    backoff_max_ms: Annotated[int, Field(ge=1, le=600_000)] = 8_000
    request_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 30

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if self.id is not None and not JOB_ID.fullmatch(self.id):
            raise ValueError("id must be 1–80 of A–Z a–z 0–9 . _ - (starting with a letter or digit)")
        if self.backoff_max_ms < self.backoff_base_ms:
            raise ValueError("backoff_max_ms must not be below backoff_base_ms")
        return self

    @property
    def buffer_bytes(self) -> int:
        """The relay memory this job holds for chunk buffers: workers × chunk size."""
        chunk = self.manifest.chunk_bytes if self.manifest is not None else self.chunk_bytes
        return self.workers * chunk


class JobRecord(Model):
    """What the express stores of a job: its spec (with the manifest once known), state and error."""

    id: str
    spec: JobSpec
    state: JobState
    error: JobError | None = None
    rate_cap_bytes_per_s: int
    created_ms: int
    updated_ms: int

    def moved(self, event: JobEvent, now_ms: int, **changes: Any) -> JobRecord:
        """This record after `event` (InvalidTransition if not allowed), with `changes` applied."""
        state = next_state(self.state, event, self.error)
        return self.model_copy(update={"state": state, "updated_ms": now_ms, **changes})

    def view(self, progress: dict[str, Any]) -> JobView:
        """The record as the control API shows it (no tokens, no chunk hashes), with `progress`."""
        spec = self.spec
        manifest = spec.manifest
        return JobView(
            id=self.id,
            state=self.state,
            error=self.error,
            source=Place(url=spec.source.url, bucket=spec.source.bucket),
            destination=Place(url=spec.destination.url, bucket=spec.destination.bucket),
            workers=spec.workers,
            chunk_bytes=manifest.chunk_bytes if manifest is not None else spec.chunk_bytes,
            rate_cap_bytes_per_s=self.rate_cap_bytes_per_s,
            files=None if manifest is None else [f.path for f in manifest.files],
            created_ms=self.created_ms,
            updated_ms=self.updated_ms,
            progress=ProgressView.model_validate(progress),
        )


class Place(Model):
    """A storage endpoint without its token."""

    url: str
    bucket: str


class ProgressView(Model):
    """A job's progress: bytes and chunks done of the total (`held`: what the destination already
    had when this run started), rate (bytes/s over the last seconds), ETA (ms, None while unknown),
    retries, chunks the destination refused, chunk writes of the committed files, and the last
    error (None until one happened)."""

    bytes_done: int
    bytes_total: int
    chunks_done: int
    chunks_total: int
    files_done: int
    files_total: int
    bytes_held: int
    chunks_held: int
    rate_bytes_per_s: int
    eta_ms: int | None
    retries: int
    rejected_chunks: int
    chunk_writes: int
    last_error: JobError | None


class JobView(Model):
    """A job as the control API answers it and the client returns it."""

    id: str
    state: JobState
    error: JobError | None
    source: Place
    destination: Place
    workers: int
    chunk_bytes: int
    rate_cap_bytes_per_s: int
    files: list[str] | None
    created_ms: int
    updated_ms: int
    progress: ProgressView

    @property
    def finished(self) -> bool:
        """Whether the job reached a state it leaves only on request (completed, failed, cancelled)."""
        return self.state in TERMINAL


def same_request(first: JobSpec, second: JobSpec) -> bool:
    """Whether two specs ask for the same job (a repeated create with the same id is idempotent)."""
    return first.model_dump(exclude={"manifest"}) == second.model_dump(exclude={"manifest"}) and (
        second.manifest is None or first.manifest == second.manifest
    )
