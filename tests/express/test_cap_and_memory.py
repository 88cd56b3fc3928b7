"""The bandwidth cap holds (and can be changed) while a job runs, and the relay's memory stays
within workers × chunk size + 64 MiB however large the files are (peak RSS read from /proc)."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.express import ExpressClient
from tests.support.express import (
    MIB,
    ExpressProcess,
    Storage,
    peak_rss_bytes,
    random_file,
    sha256_of,
    spec,
    wait_progress,
    wait_state,
)

pytestmark = pytest.mark.slow
WINDOW_S = 2.5


async def measured_rate(client: ExpressClient, job_id: str) -> float:
    """Bytes per second the job completed over WINDOW_S, from its progress."""
    first = await client.job(job_id)
    started = time.monotonic()
    deadline = started + WINDOW_S
    while time.monotonic() < deadline:
        view = await client.job(job_id)
        assert not view.finished, "the job ended before the window closed"
        await asyncio.sleep(0.1)  # polling flat out would take the cores the job needs
    last = await client.job(job_id)
    return (last.progress.bytes_done - first.progress.bytes_done) / (time.monotonic() - started)


SLOW, FAST = MIB // 2, 3 * MIB // 2  # the two caps of the test below


async def test_bandwidth_cap_holds_and_changes_while_running(
    source: Storage, destination: Storage, client: ExpressClient
) -> None:
    """At a 0.5 MiB/s cap the job moves 0.5 MiB/s over a 2.5 s window; raised to 1.5 MiB/s while it
    runs, it moves faster than the old cap allows and never more than 10 % above the new one (a busy
    machine may not reach 1.5 MiB/s: at load 14 it moved 0.73 MiB/s); lifted, it finishes with the right bytes. (The 10 s ± 10 % figure at higher rates is the
    benchmark's.) Caps this low are ones a loaded 2-core machine still reaches (at load 37 a 4 MiB/s
    cap was met at 1.3 MiB/s, which tested the machine, not the cap). Small chunks and two workers
    keep what is in flight well under the tolerance."""
    whole = random_file(source.bucket / "state.bin", 48 * MIB)
    job = await client.create(
        spec(
            source.endpoint(),
            destination.endpoint(),
            chunk_bytes=64 << 10,
            workers=2,
            rate_cap_bytes_per_s=SLOW,
        )
    )
    await wait_progress(client, job.id, 8)
    slow = await measured_rate(client, job.id)
    # Never above the cap; below it by at most what a busy machine's scheduling costs.
    assert 0.5 * SLOW <= slow <= 1.1 * SLOW, slow / MIB
    await client.set_rate(job.id, FAST)
    await wait_progress(client, job.id, (await client.job(job.id)).progress.chunks_done + 4)
    fast = await measured_rate(client, job.id)
    assert fast <= 1.1 * FAST, fast / MIB
    # The raise took effect while running: beyond what the old cap allows, and faster than before.
    assert fast > 1.1 * SLOW, (slow / MIB, fast / MIB)
    assert fast >= 1.2 * slow, (slow / MIB, fast / MIB)
    assert (await client.set_rate(job.id, 0)).rate_cap_bytes_per_s == 0
    done = await wait_state(client, job.id, {"completed"}, timeout_s=60)
    assert done.progress.chunk_writes == 48 * 16
    assert sha256_of(destination.bucket / "state.bin") == whole


async def test_relay_memory_is_bounded_by_workers_times_chunk(
    source: Storage, destination: Storage, express: ExpressProcess, client: ExpressClient
) -> None:
    """Moving 192 MiB with 4 workers of 8 MiB chunks, the express process's peak RSS stays within
    4 × 8 MiB + 64 MiB (buffering the file would need 192 MiB)."""
    whole = random_file(source.bucket / "state.bin", 192 * MIB)
    try:
        job = await client.create(
            spec(source.endpoint(), destination.endpoint(), chunk_bytes=8 * MIB, workers=4)
        )
        done = await wait_state(client, job.id, {"completed"}, timeout_s=120)
        assert sha256_of(destination.bucket / "state.bin") == whole
        assert done.progress.chunk_writes == 24
        peak = peak_rss_bytes(express.pid)
        assert peak <= 4 * 8 * MIB + 64 * MIB, peak / MIB
    finally:
        for path in (source.bucket / "state.bin", destination.bucket / "state.bin"):
            path.unlink(missing_ok=True)
