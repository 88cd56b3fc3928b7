"""Chunked uploads at the destination: chunks in any order, each verified, a durable committed-chunk map.

A chunk is written only if its bytes match the entry's SHA-256 (else `bad_chunk`, recorded
nowhere), and recorded in the map (`connectors.upload_files`) once written, so a restarted server
knows which chunks it holds and a chunk already in the map is never written again.

The whole-file SHA-256 grows with the contiguous prefix of written chunks: a chunk that extends it
is fed from memory (no read back), in a second thread while its own is verified and written. A
chunk that arrives while the chunks before it are still being verified and written (K senders at
once) waits for them in its thread, its buffer still held, and is fed from memory in turn; only
chunks that arrived ahead of a gap (nothing being written before them) are read back from the data
file by a background task once the gap is filled. Committing only hashes what is left before it
fsyncs and renames the data onto the target (and fsyncs the directory).
After a restart the prefix is read and hashed again from disk, so a write lost in a crash is
caught. If the whole file does not match, the chunks that no longer match their hash are dropped
from the map and reported missing, so only they are sent again.

Blocking file work runs in threads; the event loop keeps the bookkeeping. Chunk bodies are read
into reused page-aligned buffers, and the bytes of bodies being received are bounded (`reserve`,
503 `busy`). Aligned chunks are written with O_DIRECT where the file system allows it: no copy
into the page cache (most of a buffered write's CPU), and the bytes are on the device when the
chunk is recorded, so the commit's fsync has little left to flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import mmap
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from connectors import upload_files as files
from connectors.manifest import UploadEntry, to_ranges
from connectors.upload_files import DATA_SUFFIX, MAP_SUFFIX, META_SUFFIX, UploadError, os_error, side

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["ChunkDigest", "UploadError", "UploadStatus", "Uploads"]

# Feeds whole-file hashes while the chunk threads verify and write (one feed per upload at a time).
_FEEDER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="upload-whole-hash")
_TURN_WAIT_S = 30.0  # longest a written chunk waits for its turn to feed the whole-file hash


@dataclass
class _Upload:
    target: Path
    entry: UploadEntry
    fd: int
    map_fd: int
    direct_fd: int  # the data file opened with O_DIRECT (-1 where the file system refuses it)
    committed: set[int]
    writes: int
    in_flight: set[int] = field(default_factory=set)
    committing: bool = False
    closing: bool = False  # forgotten while threads still used its files: the last one closes them
    users: int = 0  # threads working on its descriptors
    whole: _Hash = field(default_factory=hashlib.sha256)
    hashed: int = 0  # chunks [0, hashed) are in `whole`
    hash_lock: threading.Lock = field(default_factory=threading.Lock)  # guards `whole` and `hashed`
    running: set[int] = field(default_factory=set)  # chunks whose thread is verifying and writing them
    # Guards `running`; notified whenever a chunk's thread ends.
    turn: threading.Condition = field(default_factory=threading.Condition)
    hasher: asyncio.Task[None] | None = None
    read_buffer: bytearray = field(default_factory=lambda: bytearray(files.READ_BYTES))
    write_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class UploadStatus:
    """What the destination holds of one file: committed chunk ranges, or the whole file."""

    chunks: int
    committed: list[list[int]]
    complete: bool
    chunk_writes: int

    def as_json(self) -> dict[str, Any]:
        """The status as a JSON object."""
        return {
            "chunks": self.chunks,
            "committed": self.committed,
            "complete": self.complete,
            "chunk_writes": self.chunk_writes,
        }


class Uploads:
    """Every open chunked upload of one storage service, loaded from disk on first use."""

    def __init__(self, max_in_flight_bytes: int = 256 << 20) -> None:
        self._open: dict[Path, _Upload] = {}
        self._lock = asyncio.Lock()
        self.max_in_flight_bytes = max_in_flight_bytes
        self._in_flight_bytes = 0
        self._buffers: list[mmap.mmap] = []
        self.read_back_chunks = 0  # chunks read back from disk for whole-file hashes (not fed from memory)

    async def _get(self, target: Path) -> _Upload | None:
        upload = self._open.get(target)
        if upload is not None:
            return upload
        if not side(target, META_SUFFIX).is_file():
            return None
        try:
            entry = UploadEntry.model_validate_json(side(target, META_SUFFIX).read_bytes())
            committed, writes = files.read_map(side(target, MAP_SUFFIX), len(entry.chunks))
            fd = os.open(side(target, DATA_SUFFIX), os.O_RDWR | os.O_CREAT, 0o600)
            map_fd = os.open(side(target, MAP_SUFFIX), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except (OSError, ValidationError, ValueError):
            files.remove_files(target)  # an unreadable upload is started again by its sender
            return None
        direct_fd = files.open_direct(side(target, DATA_SUFFIX))
        upload = self._open[target] = _Upload(target, entry, fd, map_fd, direct_fd, committed, writes)
        return upload

    def _status(self, upload: _Upload) -> UploadStatus:
        return UploadStatus(len(upload.entry.chunks), to_ranges(upload.committed), False, upload.writes)

    async def status(self, target: Path) -> UploadStatus | None:
        """The upload's status, or None when no upload of `target` is open."""
        async with self._lock:
            upload = await self._get(target)
        return None if upload is None else self._status(upload)

    async def open(self, target: Path, entry: UploadEntry) -> UploadStatus:
        """Open (or resume, if opened with the same entry) the upload of `target`. A different entry
        replaces the upload; a target that already holds the entry's file is reported complete."""
        async with self._lock:
            upload = await self._get(target)
            if upload is not None and upload.entry == entry:
                return self._status(upload)
            if upload is not None:
                self._close(upload)
                files.remove_files(target)
            if await asyncio.to_thread(files.holds, target, entry.sha256, entry.size_bytes):
                return UploadStatus(len(entry.chunks), to_ranges(range(len(entry.chunks))), True, 0)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if shutil.disk_usage(target.parent).free < entry.size_bytes:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                files.write_meta(target, entry)
                fd = os.open(side(target, DATA_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
                map_fd = os.open(side(target, MAP_SUFFIX), flags, 0o600)
            except OSError as exc:
                files.remove_files(target)
                raise os_error(exc, "opening the upload") from None
            direct_fd = files.open_direct(side(target, DATA_SUFFIX))
            upload = self._open[target] = _Upload(target, entry, fd, map_fd, direct_fd, set(), 0)
            return self._status(upload)

    async def chunk_length(self, target: Path, index: int) -> int:
        """The byte length of chunk `index` of the open upload of `target` (404 `no_upload`, 400)."""
        upload = await self._require(target)
        if not 0 <= index < len(upload.entry.chunks):
            last = len(upload.entry.chunks) - 1
            raise UploadError(400, "invalid_request", f"chunk {index} is outside 0–{last}")
        return upload.entry.span(index)[1]

    async def digest(self, target: Path, index: int) -> ChunkDigest:
        """A `ChunkDigest` for chunk `index` of the open upload of `target`, to take as it arrives."""
        return ChunkDigest(await self._require(target), index)

    async def write_chunk(
        self, target: Path, index: int, data: memoryview, digest: ChunkDigest | None = None
    ) -> bool:
        """Verify and write chunk `index` (with its `digest` if one took all of `data` as it
        arrived); False if it was already committed (nothing written)."""
        upload = await self._require(target)
        length = await self.chunk_length(target, index)
        if len(data) != length:
            raise UploadError(400, "bad_length", f"chunk {index} has {length} bytes, not {len(data)}")
        if index in upload.committed:
            return False
        if upload.committing or index in upload.in_flight:
            raise UploadError(409, "chunk_in_flight", f"chunk {index} is being written or committed; retry")
        upload.in_flight.add(index)
        upload.users += 1
        try:
            written = await asyncio.to_thread(_write_and_extend, upload, index, data, digest)
            if not written:
                raise UploadError(
                    422, "bad_chunk", f"chunk {index} does not match its SHA-256; send it again"
                )
            if upload.closing:
                raise UploadError(409, "upload_aborted", "the upload was aborted or replaced meanwhile")
            os.write(upload.map_fd, f"{index}\n".encode())
        except OSError as exc:
            raise os_error(exc, f"writing chunk {index}") from None
        finally:
            upload.in_flight.discard(index)
            upload.users -= 1
            self._close_if_idle(upload)
        upload.committed.add(index)
        upload.writes += 1
        if upload.hashed in upload.committed and (upload.hasher is None or upload.hasher.done()):
            upload.hasher = asyncio.create_task(self._hash_prefix(upload))
        return True

    async def _hash_prefix(self, upload: _Upload) -> None:
        """Feed the whole-file hash with the committed chunks that extend its prefix, read from disk."""
        while not upload.closing and not upload.committing:
            upload.users += 1
            try:
                progressed = await asyncio.to_thread(_extend_from_disk, upload)
            except OSError:
                with upload.hash_lock:  # the commit reads everything again
                    upload.whole, upload.hashed = hashlib.sha256(), 0
                progressed = 0
            finally:
                upload.users -= 1
                self._close_if_idle(upload)
            self.read_back_chunks += progressed
            if not progressed:
                return

    def buffer(self, length: int) -> memoryview:
        """A buffer of `length` bytes for a chunk's body; 503 `busy` past the bytes-in-flight budget.
        Give it back with `release`."""
        if self._in_flight_bytes + length > self.max_in_flight_bytes:
            raise UploadError(503, "busy", "too many chunk bytes in flight; retry shortly")
        self._in_flight_bytes += length
        spare = next((b for b in self._buffers if len(b) >= length), None)
        if spare is not None:
            self._buffers.remove(spare)
        # An anonymous map is page-aligned, as a write that bypasses the page cache needs.
        return memoryview(spare if spare is not None else mmap.mmap(-1, length))[:length]

    def release(self, view: memoryview) -> None:
        """Give back a buffer from `buffer` (kept for reuse while the kept ones fit the budget)."""
        self._in_flight_bytes -= len(view)
        buffer = view.obj
        view.release()
        if (
            isinstance(buffer, mmap.mmap)
            and sum(map(len, self._buffers)) + len(buffer) <= self.max_in_flight_bytes
        ):
            self._buffers.append(buffer)
        elif isinstance(buffer, mmap.mmap):
            buffer.close()

    async def commit(self, target: Path, expected_sha256: str | None) -> tuple[bool, int]:
        """Verify the whole file, fsync and rename it onto `target`: (committed now, chunk writes).
        An upload already committed (none open, the target matching `expected_sha256`) is (False, 0)."""
        upload = await self._get(target)
        if upload is None:
            held = expected_sha256 is not None and await asyncio.to_thread(
                files.holds, target, expected_sha256
            )
            if held:
                return False, 0
            raise UploadError(404, "no_upload", f"no upload of {target.name!r} is open")
        missing = set(range(len(upload.entry.chunks))) - upload.committed
        if missing:
            raise UploadError(
                409, "chunks_missing", f"{len(missing)} chunks are missing", missing=to_ranges(missing)
            )
        if upload.committing:
            raise UploadError(409, "chunk_in_flight", "the upload is being committed; retry")
        upload.committing = True
        if upload.hasher is not None:
            await upload.hasher
        upload.users += 1
        self.read_back_chunks += len(upload.entry.chunks) - upload.hashed
        try:
            bad = await asyncio.to_thread(_verify_and_install, upload)
        except OSError as exc:
            raise os_error(exc, "committing") from None
        finally:
            upload.committing = False
            upload.users -= 1
            self._close_if_idle(upload)
        if upload.closing:
            raise UploadError(409, "upload_aborted", "the upload was aborted while it was committed")
        if bad:
            upload.committed -= bad
            upload.whole, upload.hashed = hashlib.sha256(), 0
            files.rewrite_map(side(target, MAP_SUFFIX), upload.committed)
            os.close(upload.map_fd)
            upload.map_fd = os.open(side(target, MAP_SUFFIX), os.O_WRONLY | os.O_APPEND)
            upload.writes = len(upload.committed)
            raise UploadError(
                409, "chunks_missing", f"{len(bad)} chunks changed on disk", missing=to_ranges(bad)
            )
        self._close(upload)
        files.remove_files(target)
        return True, upload.writes

    async def abort(self, target: Path) -> bool:
        """Forget the upload of `target` and remove its files; False if none was open."""
        async with self._lock:
            upload = await self._get(target)
            if upload is not None:
                self._close(upload)
            files.remove_files(target)
        return upload is not None

    async def close(self) -> None:
        """Close every open file (the uploads stay on disk for the next start)."""
        for upload in list(self._open.values()):
            self._close(upload)
            if upload.hasher is not None:
                await upload.hasher

    async def _require(self, target: Path) -> _Upload:
        upload = await self._get(target)
        if upload is None:
            raise UploadError(404, "no_upload", f"no upload of {target.name!r} is open; open it first")
        return upload

    def _close(self, upload: _Upload) -> None:
        self._open.pop(upload.target, None)
        upload.closing = True
        self._close_if_idle(upload)

    @staticmethod
    def _close_if_idle(upload: _Upload) -> None:
        # A thread may still be working through these descriptors; closing them under it could
        # let a reused descriptor number receive its bytes.
        if upload.closing and not upload.users and upload.fd >= 0:
            for fd in (upload.fd, upload.map_fd, upload.direct_fd):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            upload.fd = upload.map_fd = upload.direct_fd = -1


class ChunkDigest:
    """The SHA-256 of one chunk's body taken slice by slice as it is received, in the receiving
    thread while each slice is still in the CPU's cache (hashing a whole chunk afterwards reads it
    back from memory); and, from when the chunk is the next one the whole-file hash needs, a copy of
    that hash carried on with it the same way (installed once the chunk is written)."""

    def __init__(self, upload: _Upload, index: int) -> None:
        self._upload, self._index = upload, index
        self.chunk = hashlib.sha256()
        self.whole: _Hash | None = None
        self.taken = 0  # bytes of the body in `chunk` (and in `whole`, when there is one)

    def update(self, received: memoryview) -> None:
        """Take the bytes of `received` (the body so far) not taken yet."""
        new = received[self.taken :]
        self.chunk.update(new)
        if self.whole is not None:
            self.whole.update(new)
        elif self._upload.hashed == self._index:  # a peek; confirmed under the lock
            with self._upload.hash_lock:
                if self._upload.hashed == self._index:
                    self.whole = self._upload.whole.copy()
            if self.whole is not None:
                self.whole.update(received)  # the chunk so far: its last slices are still cached
        self.taken = len(received)


def _write_and_extend(upload: _Upload, index: int, data: memoryview, digest: ChunkDigest | None) -> bool:
    """Verify and write chunk `index` (False if it does not match), then feed it to the whole-file
    hash from memory if it is next (`_extend_from_memory`), unless `digest` carried the hash on."""
    with upload.turn:
        upload.running.add(index)
    written = False
    try:
        if digest is not None and digest.taken == len(data):
            offset, expected = upload.entry.span(index)[0], upload.entry.chunks[index]
            written = files.verify_and_write(
                upload.fd,
                data,
                offset,
                expected,
                upload.write_lock,
                upload.direct_fd,
                digest.chunk.hexdigest(),
            )
            fed = written and _install(upload, index, digest.whole)
        else:
            written, fed = _verify_write_and_feed(upload, index, data)
        if written and not fed:
            _extend_from_memory(upload, index, data)
    finally:
        with upload.turn:
            upload.running.discard(index)
            upload.turn.notify_all()
    return written


def _verify_write_and_feed(upload: _Upload, index: int, data: memoryview) -> tuple[bool, bool]:
    """Verify and write chunk `index`: (written, fed to the whole-file hash). If it is the next chunk
    of that hash, a copy of the hash is fed from memory in another thread meanwhile (hashlib and the
    write both release the GIL, so the two SHA-256 passes and the write overlap); the copy replaces
    the hash once the chunk is written."""
    offset, expected = upload.entry.span(index)[0], upload.entry.chunks[index]
    with contextlib.ExitStack() as stack:
        fed: Future[_Hash] | None = None
        if upload.hashed == index:  # a peek; confirmed under the lock, held until the hash moves on
            stack.enter_context(upload.hash_lock)
            if upload.hashed == index:
                fed = _FEEDER.submit(_fed, upload.whole.copy(), data)
        written = False
        try:
            written = files.verify_and_write(
                upload.fd, data, offset, expected, upload.write_lock, upload.direct_fd
            )
        finally:
            if fed is not None:
                whole = fed.result()  # always waited for: `data` goes back to the pool afterwards
                if written:
                    upload.whole, upload.hashed = whole, index + 1
    return written, fed is not None


def _install(upload: _Upload, index: int, whole: _Hash | None) -> bool:
    """Make `whole` (the whole-file hash fed up to chunk `index` included) the upload's, if chunk
    `index` is still the next one it needs: whether it did."""
    if whole is None:
        return False
    with upload.hash_lock:
        if upload.hashed != index or upload.closing:
            return False
        upload.whole, upload.hashed = whole, index + 1
    return True


def _extend_from_memory(upload: _Upload, index: int, data: memoryview) -> None:
    """Feed written chunk `index` to the whole-file hash once the chunks before it are in it, waiting
    while the next one to feed is being verified and written by its own thread (which never waits
    for a later chunk, so the waits end). Leaves it to `_extend_from_disk` when nothing is being
    written before it, when the upload is closing, or after `_TURN_WAIT_S`."""
    deadline = time.monotonic() + _TURN_WAIT_S
    with upload.turn:  # `hashed` only moves on before a running chunk's thread tells `turn` it ended
        while upload.hashed < index and upload.hashed in upload.running and not upload.closing:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            upload.turn.wait(left)
    with upload.hash_lock:
        if upload.hashed == index and not upload.closing:
            upload.whole.update(data)
            upload.hashed = index + 1


def _fed(whole: _Hash, data: memoryview) -> _Hash:
    whole.update(data)
    return whole


def _extend_from_disk(upload: _Upload) -> int:
    """Feed the whole-file hash with the committed chunks that extend its prefix, read back from the
    data file: how many; 0 once there is none (or the data is shorter than the entry: it starts again)."""
    with upload.hash_lock:
        start = end = upload.hashed
        while end in upload.committed:
            end += 1
        if end == start:
            return 0
        if not files.hash_chunks_into(upload.whole, upload.fd, upload.entry, start, end, upload.read_buffer):
            upload.whole, upload.hashed = hashlib.sha256(), 0  # the commit reads everything again
            return 0
        upload.hashed = end
        return end - start


def _verify_and_install(upload: _Upload) -> set[int]:
    """Finish the whole-file hash from disk; if it matches, install the file and return no chunks,
    else return the chunks that no longer match theirs (read a second time only then)."""
    entry = upload.entry
    with upload.hash_lock:
        complete = files.hash_chunks_into(
            upload.whole, upload.fd, entry, upload.hashed, len(entry.chunks), upload.read_buffer
        )
        if complete:
            upload.hashed = len(entry.chunks)
    if complete and upload.whole.hexdigest() == entry.sha256:
        files.install(upload.fd, upload.target, entry.size_bytes)
        return set()
    bad = files.changed_chunks(upload.fd, entry)
    if not bad:  # every chunk matches but the whole does not: the entry contradicts itself
        raise UploadError(
            422, "manifest_mismatch", "the chunks match their hashes but not the file's SHA-256"
        )
    return bad
