"""A job's progress: bytes and chunks done of the total, rate over the last seconds, ETA, retries,
the last error. Pure bookkeeping: the relay reports, the control API shows `snapshot()`.

Bytes the destination already held when the job (re)started count as done (and as `held`); the
rate counts only what this run moved, over a sliding window of `window_s`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RateMeter:
    """Bytes per second over the last `window_s` seconds (monotonic clock)."""

    window_s: float = 3.0
    clock: Callable[[], float] = time.monotonic
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _total: int = 0

    def start(self) -> None:
        """Start measuring now (a run begins)."""
        self._samples.clear()
        self._samples.append((self.clock(), self._total))

    def add(self, nbytes: int) -> None:
        """Count `nbytes` moved now."""
        now = self.clock()
        if not self._samples:
            self._samples.append((now, 0))
        self._total += nbytes
        self._samples.append((now, self._total))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while len(self._samples) > 2 and self._samples[1][0] < now - self.window_s:
            self._samples.popleft()

    def rate(self) -> int:
        """Bytes per second over the window (0 before two samples)."""
        now = self.clock()
        self._trim(now)
        if len(self._samples) < 2:
            return 0
        start_s, start_bytes = self._samples[0]
        span_s = max(now - start_s, 1e-3)
        return int((self._total - start_bytes) / span_s)


@dataclass
class Progress:
    """Counters of one job; `changed` is called after every update."""

    bytes_total: int = 0
    chunks_total: int = 0
    files_total: int = 0
    bytes_done: int = 0
    chunks_done: int = 0
    files_done: int = 0
    bytes_held: int = 0
    chunks_held: int = 0
    retries: int = 0
    rejected_chunks: int = 0
    chunk_writes: int = 0
    last_error: dict[str, Any] | None = None
    meter: RateMeter = field(default_factory=RateMeter)
    changed: Callable[[], None] = lambda: None

    def plan(self, bytes_total: int, chunks_total: int, files_total: int) -> None:
        """Set the totals and start from zero done."""
        self.bytes_total, self.chunks_total, self.files_total = bytes_total, chunks_total, files_total
        self.bytes_done = self.chunks_done = self.files_done = self.bytes_held = self.chunks_held = 0
        self.meter.start()
        self.changed()

    def held(self, nbytes: int, chunks: int) -> None:
        """Chunks the destination already held: done, but not moved by this run."""
        self.bytes_done += nbytes
        self.chunks_done += chunks
        self.bytes_held += nbytes
        self.chunks_held += chunks
        self.changed()

    def chunk_done(self, nbytes: int) -> None:
        """A chunk arrived at the destination."""
        self.bytes_done += nbytes
        self.chunks_done += 1
        self.meter.add(nbytes)
        self.changed()

    def chunks_lost(self, nbytes: int, chunks: int) -> None:
        """Chunks counted done that the destination must be sent again."""
        self.bytes_done -= nbytes
        self.chunks_done -= chunks
        self.changed()

    def file_done(self, chunk_writes: int) -> None:
        """A file was committed at the destination after `chunk_writes` chunk writes."""
        self.files_done += 1
        self.chunk_writes += chunk_writes
        self.changed()

    def retry(self, error: dict[str, Any], rejected: bool = False) -> None:
        """A call will be tried again after `error`."""
        self.retries += 1
        self.rejected_chunks += int(rejected)
        self.last_error = error
        self.changed()

    def snapshot(self) -> dict[str, Any]:
        """The progress as JSON (integers only): rate in bytes/s, ETA in ms (None while unknown)."""
        rate = self.meter.rate()
        remaining = max(0, self.bytes_total - self.bytes_done)
        eta_ms = 0 if remaining == 0 else (remaining * 1000 // rate if rate else None)
        return {
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "bytes_held": self.bytes_held,
            "chunks_held": self.chunks_held,
            "rate_bytes_per_s": rate,
            "eta_ms": eta_ms,
            "retries": self.retries,
            "rejected_chunks": self.rejected_chunks,
            "chunk_writes": self.chunk_writes,
            "last_error": self.last_error,
        }
