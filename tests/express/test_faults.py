"""The migration checklist's transfer faults, with real storage and express processes and the
fault-injecting proxy between them: a dying source, a full disk, a corrupted byte, a failing path,
a cancel, and the express killed mid-job."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import AsyncIterator

import pytest

from connectors.express import ExpressClient, ExpressRefused
from connectors.storage import build_manifest
from tests.express.faultproxy import FaultProxy
from tests.support.express import (
    MIB,
    ExpressProcess,
    Storage,
    random_file,
    sha256_of,
    spec,
    upload_status,
    wait_progress,
    wait_state,
)
from tests.support.polling import eventually

CHUNKS = 32  # 8 MiB in chunks of 256 KiB
SLOW = 4 * MIB  # a cap that makes an 8 MiB move last about 2 s, so faults land mid-transfer

pytestmark = pytest.mark.slow


@pytest.fixture(name="to_destination")
async def fixture_to_destination(destination: Storage) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the destination endpoint."""
    proxy = FaultProxy(destination.port)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture(name="to_source")
async def fixture_to_source(source: Storage) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the source endpoint."""
    proxy = FaultProxy(source.port)
    await proxy.start()
    yield proxy
    await proxy.close()


def chunk_puts(proxy: FaultProxy) -> int:
    """How many chunk PUTs went through `proxy`."""
    return proxy.count("PUT", "chunk=")


async def test_source_dies_mid_stream(
    source: Storage,
    destination: Storage,
    to_source: FaultProxy,
    to_destination: FaultProxy,
    client: ExpressClient,
) -> None:
    """The source dies in the middle of a chunk: the job retries (counted), stalls, and once the
    source is back resumes from the destination's committed-chunk map, sending only the missing
    chunks; every chunk is written once and the file's hash matches."""
    whole = random_file(source.bucket / "state.bin", 8 * MIB)
    job = await client.create(
        spec(
            source.endpoint(to_source.url),
            destination.endpoint(to_destination.url),
            max_attempts=3,
            rate_cap_bytes_per_s=SLOW,
        )
    )
    await wait_progress(client, job.id, 8)
    to_source.cut_after(100_000, then_refuse=True)  # mid-chunk: a ranged read breaks off
    await eventually(lambda: asyncio.sleep(0, to_source.cuts == 1), 10, "the cut")
    source.kill()
    stalled = await wait_state(client, job.id, {"failed"})
    assert stalled.error is not None
    assert (stalled.error.code, stalled.error.fatal) == ("connection_failed", False)
    assert stalled.progress.retries >= 2
    assert stalled.progress.last_error is not None
    held = await upload_status(destination, "state.bin")
    assert 8 <= sum(end - start for start, end in held["committed"]) < CHUNKS  # type: ignore[attr-defined]

    source.start()  # the same port, behind the same proxy
    await to_source.accept()
    puts_before = chunk_puts(to_destination)
    await client.resume(job.id)
    done = await wait_state(client, job.id, {"completed"})
    assert sha256_of(destination.bucket / "state.bin") == whole
    assert done.progress.chunk_writes == CHUNKS  # each chunk written once at the destination
    assert done.progress.chunks_held >= 8
    assert chunk_puts(to_destination) - puts_before == CHUNKS - done.progress.chunks_held
    assert done.progress.retries >= stalled.progress.retries


async def test_destination_disk_full_is_fatal_and_cleans_up(
    source: Storage, destination: Storage, client: ExpressClient
) -> None:
    """The destination's disk fills up: the job fails at once with disk_full (fatal, no resume) and
    nothing of it is left at the destination, the file it had committed included."""
    random_file(source.bucket / "a.bin", 100_000)
    whole = random_file(source.bucket / "b.bin", 4 * MIB)
    resource.prlimit(destination.pid, resource.RLIMIT_FSIZE, (2 * MIB, 2 * MIB))
    job = await client.create(spec(source.endpoint(), destination.endpoint(), workers=2))
    failed = await wait_state(client, job.id, {"failed"})
    assert failed.error is not None
    assert (failed.error.code, failed.error.fatal) == ("disk_full", True)
    assert destination.files() == []
    assert sha256_of(source.bucket / "b.bin") == whole
    with pytest.raises(ExpressRefused) as refused:
        await client.resume(job.id)
    assert refused.value.status == 409


async def test_corrupted_byte_resends_that_chunk_alone(
    source: Storage, destination: Storage, to_destination: FaultProxy, client: ExpressClient
) -> None:
    """One byte flipped on the way to the destination: that chunk is refused and sent again, no
    other chunk is sent twice, and the committed file is correct."""
    whole = random_file(source.bucket / "state.bin", 2 * MIB)
    to_destination.corrupt_request(3, 1000)
    job = await client.create(spec(source.endpoint(), destination.endpoint(to_destination.url)))
    done = await wait_state(client, job.id, {"completed"})
    assert done.progress.rejected_chunks == 1
    puts = [target for method, target in to_destination.requests if method == "PUT"]
    assert to_destination.corrupted is not None
    assert len(puts) == 9
    assert puts.count(to_destination.corrupted) == 2
    assert len(set(puts)) == 8
    assert done.progress.chunk_writes == 8
    assert sha256_of(destination.bucket / "state.bin") == whole


async def test_failing_path_retries_with_backoff_then_fails(
    source: Storage, destination: Storage, to_destination: FaultProxy, client: ExpressClient
) -> None:
    """The path to the destination breaks: the job retries with growing waits, then fails with a clear,
    non-fatal error that keeps what arrived; once the path is back, a resume completes the move."""
    whole = random_file(source.bucket / "state.bin", 8 * MIB)
    options = {
        "max_attempts": 4,
        "backoff_base_ms": 100,
        "backoff_max_ms": 1000,
        "rate_cap_bytes_per_s": SLOW,
    }
    job = await client.create(spec(source.endpoint(), destination.endpoint(to_destination.url), **options))
    await wait_progress(client, job.id, 4)
    started = time.monotonic()
    await to_destination.refuse(cut=True)
    failed = await wait_state(client, job.id, {"failed"})
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2  # at least half of each of the 3 backoffs
    assert failed.error is not None
    assert (failed.error.code, failed.error.fatal) == ("connection_failed", False)
    assert "destination" in failed.error.message
    assert "4 attempts" in failed.error.message
    assert failed.progress.retries >= 3
    assert failed.progress.last_error is not None

    await to_destination.accept()
    await client.resume(job.id)
    done = await wait_state(client, job.id, {"completed"})
    assert done.progress.chunk_writes == CHUNKS
    assert sha256_of(destination.bucket / "state.bin") == whole


async def test_cancel_during_transfer_leaves_nothing(
    source: Storage, destination: Storage, client: ExpressClient
) -> None:
    """Cancelled mid-transfer, the job ends cancelled with nothing at the destination and the source
    untouched; cancelling again is harmless."""
    whole = random_file(source.bucket / "state.bin", 8 * MIB)
    random_file(source.bucket / "done-first.bin", 1000)
    job = await client.create(spec(source.endpoint(), destination.endpoint(), rate_cap_bytes_per_s=SLOW))
    await wait_progress(client, job.id, 4)
    first = await client.cancel(job.id)
    assert first.state in ("cancelling", "cancelled")
    await wait_state(client, job.id, {"cancelled"})
    assert destination.files() == []
    second = await client.cancel(job.id)
    assert second.state == "cancelled"
    assert sha256_of(source.bucket / "state.bin") == whole
    with pytest.raises(ExpressRefused) as refused:
        await client.resume(job.id)
    assert refused.value.status == 409


async def test_cancel_with_the_destination_dead_ends_promptly_naming_what_is_left(
    source: Storage, destination: Storage, client: ExpressClient
) -> None:
    """The destination's storage is SIGKILLed mid-transfer and the job cancelled: the clean-up tries
    the first path three times, does not try the others once the destination does not answer, and
    the job ends cancelled within seconds (not after every path's full retries), its error naming
    the paths left behind."""
    random_file(source.bucket / "a.bin", 8 * MIB)
    random_file(source.bucket / "b.bin", 1000)
    random_file(source.bucket / "c.bin", 1000)
    slow_backoff = {"backoff_base_ms": 500, "backoff_max_ms": 4000}
    job = await client.create(
        spec(source.endpoint(), destination.endpoint(), rate_cap_bytes_per_s=SLOW, **slow_backoff)
    )
    await wait_progress(client, job.id, 2)
    destination.kill()
    started = time.monotonic()
    await client.cancel(job.id)
    done = await wait_state(client, job.id, {"cancelled"}, timeout_s=60)
    took_s = time.monotonic() - started
    assert done.error is not None
    assert "could not remove at the destination" in done.error.message
    assert done.error.message.count("not tried: the destination does not answer") == 2, done.error
    # every path tried eight times with this backoff would take about 60 s; three tries of one, 1.5 s
    assert took_s < 20, (took_s, done.error)


async def test_express_killed_and_restarted_resumes_the_job(
    source: Storage,
    destination: Storage,
    to_destination: FaultProxy,
    express: ExpressProcess,
    client: ExpressClient,
) -> None:
    """SIGKILLed mid-job, a restarted express resumes the job from its state file and the destination's
    committed-chunk map: only the missing chunks are sent and each chunk is written once."""
    whole = random_file(source.bucket / "state.bin", 8 * MIB)
    job = await client.create(
        spec(source.endpoint(), destination.endpoint(to_destination.url), rate_cap_bytes_per_s=SLOW)
    )
    await wait_progress(client, job.id, 8)
    express.kill()
    # A request the killed express had begun may still be in the proxy's buffers: count it first.
    await eventually(
        lambda: to_destination.open_connections == 0, what="the killed express's connections closed"
    )
    puts_before = chunk_puts(to_destination)
    express.start()
    async with express.client() as again:
        done = await again.wait(job.id, timeout_s=60)
    assert done.state == "completed"
    assert sha256_of(destination.bucket / "state.bin") == whole
    assert done.progress.chunk_writes == CHUNKS
    assert done.progress.chunks_held >= 8
    assert chunk_puts(to_destination) - puts_before == CHUNKS - done.progress.chunks_held


async def test_source_changed_after_its_manifest_is_fatal(
    source: Storage, destination: Storage, client: ExpressClient
) -> None:
    """A source file rewritten after its manifest was built (same size, other bytes) is refused chunk by
    chunk at the destination; the relay finds its reads disagree with the manifest and the job fails
    at once with manifest_mismatch, fatal, leaving nothing at the destination."""
    random_file(source.bucket / "state.bin", 1 * MIB)
    manifest = build_manifest(source.bucket, 256 << 10)
    random_file(source.bucket / "state.bin", 1 * MIB)
    job = await client.create(spec(source.endpoint(), destination.endpoint(), manifest=manifest, workers=1))
    failed = await wait_state(client, job.id, {"failed"})
    assert failed.error is not None
    assert (failed.error.code, failed.error.fatal) == ("manifest_mismatch", True)
    # The forwarded first send is refused (its bytes are not kept to be checked), then two refusals of
    # reads into the relay's buffer that disagree with the manifest; the third wrong read is fatal.
    assert failed.progress.rejected_chunks == 3
    assert destination.files() == []
