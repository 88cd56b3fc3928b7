"""The transfer's stall watch: how long a job's progress has not moved (pure, no processes)."""

from __future__ import annotations

from typing import Any

from connectors.express.jobs import JobView
from node.migration.transfer import StallWatch


def view(bytes_done: int, chunks_done: int = 0, files_done: int = 0) -> JobView:
    """A running job's view with the given progress."""
    progress: dict[str, Any] = {
        "bytes_done": bytes_done,
        "bytes_total": 100,
        "chunks_done": chunks_done,
        "chunks_total": 10,
        "files_done": files_done,
        "files_total": 1,
        "bytes_held": 0,
        "chunks_held": 0,
        "rate_bytes_per_s": 0,
        "eta_ms": None,
        "retries": 3,
        "rejected_chunks": 0,
        "chunk_writes": 0,
        "last_error": None,
    }
    place = {"url": "http://127.0.0.1:1", "bucket": "state"}
    return JobView.model_validate(
        {
            "id": "m1.t0",
            "state": "running",
            "error": None,
            "source": place,
            "destination": place,
            "workers": 4,
            "chunk_bytes": 1 << 20,
            "rate_cap_bytes_per_s": 0,
            "files": ["state.bin"],
            "created_ms": 0,
            "updated_ms": 0,
            "progress": progress,
        }
    )


def test_a_job_stalls_only_after_its_progress_stood_still_for_stall_s() -> None:
    watch = StallWatch(stall_s=5.0, now=100.0)
    assert not watch.stalled(view(10), 100.0)
    assert not watch.stalled(view(10), 104.9)
    assert watch.stalled(view(10), 105.0)
    assert watch.idle_s(view(10), 107.0) == 7.0


def test_any_progress_restarts_the_clock() -> None:
    watch = StallWatch(stall_s=2.0, now=0.0)
    assert not watch.stalled(view(10), 0.0)
    assert not watch.stalled(view(10, chunks_done=1), 1.9)  # a chunk landed: moving
    assert not watch.stalled(view(10, chunks_done=1), 3.8)
    assert watch.stalled(view(10, chunks_done=1), 3.9)
    assert not watch.stalled(view(10, chunks_done=1, files_done=1), 4.0)  # a file committed
    assert not watch.stalled(view(20, chunks_done=1, files_done=1), 6.5)  # bytes moved
    assert watch.idle_s(view(20, chunks_done=1, files_done=1), 7.0) == 0.5
