"""The data express's pure core (manifests, chunk ranges, the token bucket, the job table, backoff,
progress) and the bounds on its jobs."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.contract import StorageEndpoint
from connectors.express.errors import JobConflict
from connectors.express.jobs import TRANSITIONS, InvalidTransition, JobError, JobSpec, next_state
from connectors.express.progress import Progress, RateMeter
from connectors.express.ratelimit import TokenBucket
from connectors.express.relay import Backoff
from connectors.express.runner import Express
from connectors.express.store import JobStore
from connectors.manifest import Manifest, ManifestFile, chunk_count, from_ranges, hash_chunks, to_ranges

H = "0" * 64


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_manifest_checks_its_chunks_and_paths() -> None:
    """A manifest refuses a wrong chunk count, a repeated path, an escaping path and floats nowhere."""
    good = ManifestFile(path="a/b", size_bytes=10_000, sha256=H, chunks=[H, H, H])
    manifest = Manifest(chunk_bytes=4096, files=[good])
    assert (manifest.total_bytes, manifest.total_chunks) == (10_000, 3)
    assert b"." not in manifest.canonical().replace(b"cpnode.express-manifest", b"")  # integers only
    with pytest.raises(ValidationError, match="make 3 chunks"):
        Manifest(chunk_bytes=4096, files=[good.model_copy(update={"chunks": [H, H]})])
    with pytest.raises(ValidationError, match="twice"):
        Manifest(chunk_bytes=4096, files=[good, good])
    with pytest.raises(ValidationError):
        ManifestFile(path="../x", size_bytes=0, sha256=H, chunks=[])
    with pytest.raises(ValidationError):
        Manifest(chunk_bytes=100, files=[])
    assert chunk_count(0, 4096) == 0
    assert chunk_count(4097, 4096) == 2


def test_ranges_round_trip_and_bounds() -> None:
    """Chunk indices travel as [start, end) runs and come back the same; runs outside the file are refused."""
    indices = {0, 1, 2, 5, 7, 8}
    assert to_ranges(indices) == [[0, 3], [5, 6], [7, 9]]
    assert from_ranges(to_ranges(indices), 9) == indices
    with pytest.raises(ValueError, match="outside"):
        from_ranges([[3, 10]], 9)


def test_hash_chunks_reads_whole_and_per_chunk(tmp_path: Path) -> None:
    """One read gives the size, the whole-file SHA-256 and each chunk's SHA-256."""
    data = random.Random(1).randbytes(10_000)
    (tmp_path / "f").write_bytes(data)
    size, whole, chunks = hash_chunks(tmp_path / "f", 4096)
    assert (size, whole) == (10_000, hashlib.sha256(data).hexdigest())
    assert chunks == [hashlib.sha256(data[i : i + 4096]).hexdigest() for i in (0, 4096, 8192)]


def test_token_bucket_caps_and_changes_rate() -> None:
    """Over T seconds at most rate·T + burst bytes pass, and a new rate applies to the next take."""
    clock = Clock()
    bucket = TokenBucket(1_000_000, clock=clock)
    taken = 0
    while clock.now < 110:  # senders take whenever the bucket lets them, over 10 s of fake time
        if bucket.try_take(10_000) == 0:
            taken += 10_000
        else:
            clock.now += 0.001
    assert 10_000_000 - 20_000 <= taken <= 10_000_000 + bucket.burst_bytes
    bucket.set_rate(2_000_000)
    wait = bucket.try_take(bucket.burst_bytes)
    assert (bucket.burst_bytes - 10_000) / 2_000_000 - 1e-6 <= wait <= bucket.burst_bytes / 2_000_000
    bucket.set_rate(0)
    assert bucket.try_take(1 << 30) == 0
    with pytest.raises(ValueError, match="negative"):
        bucket.set_rate(-1)


def test_job_transitions() -> None:
    """The table: a fatal failure can be neither resumed nor cancelled, a stalled one can; a second
    cancel is harmless; a completed job cannot be cancelled."""
    stalled = JobError(code="connection_failed", message="m", fatal=False)
    fatal = JobError(code="disk_full", message="m", fatal=True)
    assert next_state("failed", "resume", stalled) == "queued"
    assert next_state("failed", "cancel", stalled) == "cancelling"
    for event in ("resume", "cancel"):
        with pytest.raises(InvalidTransition):
            next_state("failed", event, fatal)
    assert next_state("cancelling", "cancel") == "cancelling"
    assert next_state("cancelled", "cancel") == "cancelled"
    with pytest.raises(InvalidTransition):
        next_state("completed", "cancel")
    reachable = {"queued"} | set(TRANSITIONS.values())
    assert reachable == {"queued", "running", "completed", "failing", "failed", "cancelling", "cancelled"}


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    """Attempt n waits between d/2 and d, d = min(max, base·2^(n-1))."""
    endpoint = StorageEndpoint(url="http://127.0.0.1:1", bucket="b", token="t")
    spec = JobSpec(source=endpoint, destination=endpoint, backoff_base_ms=100, backoff_max_ms=1000)
    backoff = Backoff(spec, random.Random(3))
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)):
        delays = [backoff.delay_s(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_progress_rate_and_eta() -> None:
    """The rate counts what this run moved over the window; held chunks count done, not moved."""
    clock = Clock()
    progress = Progress(meter=RateMeter(window_s=3.0, clock=clock))
    progress.plan(10_000_000, 10, 1)
    progress.held(2_000_000, 2)
    for _ in range(4):
        clock.now += 0.5
        progress.chunk_done(1_000_000)
    snapshot = progress.snapshot()
    assert snapshot["bytes_done"] == 6_000_000
    assert snapshot["rate_bytes_per_s"] == 2_000_000
    assert snapshot["eta_ms"] == 2000
    clock.now += 10
    progress.chunk_done(1_000_000)
    assert progress.snapshot()["rate_bytes_per_s"] < 2_000_000


async def test_open_jobs_are_bounded(tmp_path: Path) -> None:
    """Past `max_open_jobs` unfinished jobs a new one is refused; a job beyond the buffer budget too;
    the refused ones are not stored."""
    endpoint = StorageEndpoint(url="http://127.0.0.1:9", bucket="b", token="t")
    store = JobStore(tmp_path / "jobs.json")
    express = Express(store, max_buffer_bytes=4 << 20, max_open_jobs=2)
    try:
        for _ in range(2):  # the first runs (against a closed port), the second waits for the budget
            express.create(
                JobSpec(
                    source=endpoint,
                    destination=endpoint,
                    chunk_bytes=4 << 20,
                    workers=1,
                    backoff_base_ms=1000,
                )
            )
        with pytest.raises(JobConflict, match="not finished"):
            express.create(JobSpec(source=endpoint, destination=endpoint, chunk_bytes=4 << 20, workers=1))
        assert len(store.load()) == 2
        assert [job.record.state for job in express.ordered()][1] == "queued"
    finally:
        await express.close()
    wide = Express(JobStore(tmp_path / "other.json"), max_buffer_bytes=4 << 20)
    with pytest.raises(JobConflict, match="buffer budget"):
        wide.create(JobSpec(source=endpoint, destination=endpoint, chunk_bytes=4 << 20, workers=2))
    assert wide.store.load() == []
