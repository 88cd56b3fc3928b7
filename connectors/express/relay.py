"""The relay: moves a manifest's files from the source endpoint to the destination, chunk by chunk.

One run of a job (`Transfer.run`):
1. opens every file's upload at the destination, which answers the chunks it already holds (its
   committed-chunk map), so a run after any interruption sends only the missing chunks;
2. K workers take missing chunks from a queue; each owns one buffer of `chunk_bytes`, so the
   relay's chunk memory is K × chunk size whatever the files' sizes. A worker reads its chunk with a
   ranged GET and sends it in slices paced by the token bucket. Where both endpoints are plain HTTP
   on Linux, a chunk's first attempt is forwarded instead: the ranged GET's body goes from the
   source's socket to the destination's through a pipe (`splice`), slice by slice as paced, without
   entering this process; every retry of it goes through the buffer. The destination checks every
   chunk against the manifest; when it refuses one (`bad_chunk`), the worker hashes its buffer: if
   the bytes were already wrong when read, it reads them again (three wrong reads: the job fails
   `manifest_mismatch`), else they were spoilt on the way and it sends the buffer again (a
   forwarded chunk it refuses is read into the buffer and sent from there);
3. the worker that lands a file's last chunk commits the file, naming its chunk list's root (the
   destination checks it holds every chunk of that list, then fsyncs and renames); chunks the
   commit reports missing go back to the queue.

A transient error is retried for that chunk alone, after an exponential backoff with jitter; a
chunk the destination refuses (`bad_chunk`) is sent again from the buffer. A chunk that runs out
of `max_attempts` stops the run with `Stalled`; a fatal error stops it with that `TransferError`.
If the destination lost an upload (`UploadLost`), the run stops and the job starts a new one,
which opens every file again.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from connectors.express.endpoints import StorageClient
from connectors.express.errors import BadChunk, ChunksMissing, Stalled, TransferError, UploadLost
from connectors.express.jobs import JobSpec
from connectors.express.progress import Progress
from connectors.express.ratelimit import TokenBucket
from connectors.manifest import Manifest, chunk_span
from connectors.stopping import stop_tasks

T = TypeVar("T")
_SOURCE_MISMATCHES = 3  # reads of one chunk that disagree with the manifest before it is fatal


def _sha256(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class Backoff:
    """Exponential backoff with jitter: attempt n waits d/2 + uniform(0, d/2), d = min(max, base·2^(n-1))."""

    def __init__(self, spec: JobSpec, rng: random.Random | None = None) -> None:
        self.base_s = spec.backoff_base_ms / 1000
        self.max_s = spec.backoff_max_ms / 1000
        self.max_attempts = spec.max_attempts
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling: float = min(self.max_s, self.base_s * float(2 ** min(attempt - 1, 30)))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


async def with_retries(
    call: Callable[[], Awaitable[T]], backoff: Backoff, progress: Progress, rejected: bool = False
) -> T:
    """`call()` until it succeeds; transient errors are retried with backoff, fatal ones (and those
    with a remedy of their own: `ChunksMissing`, `UploadLost`) raised, and `Stalled` once
    `max_attempts` attempts failed."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except TransferError as exc:
            if exc.fatal or isinstance(exc, ChunksMissing | UploadLost):
                raise
            if attempt >= backoff.max_attempts:
                raise Stalled(exc, attempt) from None
            progress.retry(exc.as_json(), rejected=rejected)
            await asyncio.sleep(backoff.delay_s(attempt))


class Transfer:
    """One run of a job over its manifest; `run()` returns once every file is committed."""

    def __init__(
        self,
        spec: JobSpec,
        manifest: Manifest,
        source: StorageClient,
        destination: StorageClient,
        bucket: TokenBucket,
        progress: Progress,
    ) -> None:
        self.spec, self.manifest = spec, manifest
        self.source, self.destination = source, destination
        self.bucket, self.progress = bucket, progress
        self.backoff = Backoff(spec)
        self._queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self._pending: dict[int, set[int]] = {}
        self._committed: set[int] = set()
        self._done = asyncio.Event()
        self._forwarding = destination.can_forward_from(source)

    async def run(self) -> None:
        """Move and commit every file; raises a fatal TransferError or Stalled."""
        manifest = self.manifest
        self.progress.plan(manifest.total_bytes, manifest.total_chunks, len(manifest.files))
        if not manifest.files:
            return
        workers = [asyncio.create_task(self._worker()) for _ in range(self.spec.workers)]
        opener = asyncio.create_task(self._open_all())
        done = asyncio.create_task(self._done.wait())
        tasks = {opener, done, *workers}
        try:
            while not done.done():
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in finished - {done}:
                    task.result()  # a worker's or the opener's error stops the run
                tasks -= finished
        finally:
            # Those that ended already were read above (an error of theirs is what is raised).
            await stop_tasks(
                [task for task in (opener, done, *workers) if not task.done()], "a relay's worker"
            )

    async def _open_all(self) -> None:
        for index in range(len(self.manifest.files)):
            await self._open(index)

    async def _open(self, index: int) -> None:
        """Open file `index`'s upload and queue the chunks the destination does not hold."""
        item = self.manifest.files[index]
        entry = self.manifest.upload(item)
        committed, complete = await with_retries(
            lambda: self.destination.open_upload(item.path, entry), self.backoff, self.progress
        )
        if complete:
            self.progress.held(item.size_bytes, len(item.chunks))
            self._file_committed(index, 0)
            return
        held = sum(chunk_span(item.size_bytes, self.manifest.chunk_bytes, i)[1] for i in committed)
        self.progress.held(held, len(committed))
        self._pending[index] = set(range(len(item.chunks))) - committed
        if not self._pending[index]:
            await self._commit(index)
        for chunk in sorted(self._pending[index]):
            self._queue.put_nowait((index, chunk))

    def _file_committed(self, index: int, chunk_writes: int) -> None:
        if index in self._committed:
            return
        self._committed.add(index)
        self.progress.file_done(chunk_writes)
        if len(self._committed) == len(self.manifest.files):
            self._done.set()

    def _requeue(self, index: int, chunks: set[int]) -> None:
        """Chunks of file `index` counted done that the destination needs again."""
        item = self.manifest.files[index]
        again = chunks - self._pending.setdefault(index, set())
        lost_bytes = sum(chunk_span(item.size_bytes, self.manifest.chunk_bytes, i)[1] for i in again)
        self.progress.chunks_lost(lost_bytes, len(again))
        self._pending[index] |= again
        for chunk in sorted(again):
            self._queue.put_nowait((index, chunk))

    async def _worker(self) -> None:
        buffer = bytearray(self.manifest.chunk_bytes)
        while True:
            index, chunk = await self._queue.get()
            await self._move(index, chunk, buffer)

    async def _move(self, index: int, chunk: int, buffer: bytearray) -> None:
        """Read, check and send one chunk; commit its file if it was the last one."""
        item = self.manifest.files[index]
        offset, length = chunk_span(item.size_bytes, self.manifest.chunk_bytes, chunk)
        view = memoryview(buffer)[:length]
        loaded, mismatches, attempt = False, 0, 0
        forwarding = self._forwarding
        while True:
            attempt += 1
            try:
                if forwarding:  # straight from the source's socket to the destination's
                    forwarding = False  # any retry goes through the buffer, where the bytes can be checked
                    read = (item.path, offset, length, item.size_bytes)
                    await self.destination.forward_chunk(
                        self.source, read, chunk, self.bucket.take, self.bucket.slice_bytes
                    )
                    break
                if not loaded:
                    await self.source.read_chunk(item.path, offset, view, item.size_bytes)
                    loaded = True
                await self.destination.put_chunk(
                    item.path, chunk, view, self.bucket.take, self.bucket.slice_bytes
                )
                break
            except BadChunk as exc:
                # Refused by the destination: were the bytes wrong when read, or spoilt on the way?
                if loaded and await asyncio.to_thread(_sha256, view) != item.chunks[chunk]:
                    loaded, mismatches = False, mismatches + 1
                    message = f"{item.path} chunk {chunk} read from the source does not match the manifest"
                    if mismatches >= _SOURCE_MISMATCHES:
                        raise TransferError("manifest_mismatch", message, fatal=True) from None
                if attempt >= self.backoff.max_attempts:
                    raise Stalled(exc, attempt) from None
                self.progress.retry(exc.as_json(), rejected=True)
                await asyncio.sleep(self.backoff.delay_s(attempt))
            except TransferError as exc:
                if exc.fatal or isinstance(exc, UploadLost):
                    raise
                if attempt >= self.backoff.max_attempts:
                    raise Stalled(exc, attempt) from None
                self.progress.retry(exc.as_json())
                await asyncio.sleep(self.backoff.delay_s(attempt))
        self.progress.chunk_done(length)
        pending = self._pending[index]
        pending.discard(chunk)
        if not pending:
            await self._commit(index)

    async def _commit(self, index: int) -> None:
        item = self.manifest.files[index]
        entry = self.manifest.upload(item)
        try:
            writes = await with_retries(
                lambda: self.destination.commit(item.path, entry), self.backoff, self.progress
            )
        except ChunksMissing as exc:
            self.progress.retry(exc.as_json())
            self._requeue(index, exc.missing)
            return
        self._file_committed(index, writes)
