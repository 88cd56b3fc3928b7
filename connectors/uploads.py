"""Chunked uploads at the destination: chunks in any order, each verified, a durable committed-chunk map.

A chunk is written only if its bytes match the entry's SHA-256 (else `bad_chunk`, recorded
nowhere), and recorded in the map (`connectors.upload_files`) once written, so a restarted server
knows which chunks it holds and a chunk already in the map is never written again.

One SHA-256 pass: a chunk's hash is taken as its body arrives (`ChunkDigest`) and checked against
the entry; the file is never hashed whole again. What proves the file at the commit is that every
index of the entry's chunk list is held, each written only after its bytes matched, and that the
commit names the list's root the upload was opened with (`entry_mismatch` otherwise): a flipped
byte, a chunk sent under another index, a missing or truncated one all fail before that. The file's
SHA-256 is the entry's, taken by the source from the same read as the chunk hashes
(`connectors.manifest`). Two cases still read the file back at the commit:
- an upload loaded from disk after a restart: each recorded chunk is hashed again, so a write a
  crash lost is found; the chunks that no longer match are dropped and reported missing;
- an entry of the older form (no `chunk_root`): the file is hashed whole against its SHA-256, as
  before; if it does not match, the chunks that no longer match are reported missing.
The commit then fsyncs and renames the data onto the target (and fsyncs the directory).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connectors import upload_files as files
from connectors.manifest import UploadEntry, to_ranges
from connectors.upload_files import DATA_SUFFIX, MAP_SUFFIX, META_SUFFIX, UploadError, os_error, side

__all__ = ["ChunkDigest", "UploadError", "UploadStatus", "Uploads"]


@dataclass
class _Upload:
    target: Path
    entry: UploadEntry
    fd: int
    map_fd: int
    direct_fd: int  # the data file opened with O_DIRECT (-1 where the file system refuses it)
    committed: set[int]
    writes: int
    reloaded: bool = False  # loaded from disk: its recorded chunks are hashed again at the commit
    in_flight: set[int] = field(default_factory=set)
    committing: bool = False
    closing: bool = False  # forgotten while threads still used its files: the last one closes them
    users: int = 0  # threads working on its descriptors
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
        self.read_back_chunks = 0  # chunks read back from disk and hashed again (restarts, older entries)

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
        upload = _Upload(target, entry, fd, map_fd, direct_fd, committed, writes, reloaded=bool(committed))
        self._open[target] = upload
        return upload

    def _status(self, upload: _Upload) -> UploadStatus:
        return UploadStatus(len(upload.entry.chunks), to_ranges(upload.committed), False, upload.writes)

    async def status(self, target: Path) -> UploadStatus | None:
        """The upload's status, or None when no upload of `target` is open."""
        async with self._lock:
            upload = await self._get(target)
        return None if upload is None else self._status(upload)

    async def open(self, target: Path, entry: UploadEntry) -> UploadStatus:
        """Open (or resume, if opened with the same entry, with or without its chunk root) the upload
        of `target`. A different entry replaces the upload; a target that already holds the entry's file is reported complete."""
        async with self._lock:
            upload = await self._get(target)
            if upload is not None and _same_file(upload.entry, entry):
                if upload.entry.chunk_root is None and entry.chunk_root is not None:
                    files.write_meta(target, entry)  # opened by an older relay: now proven by its root
                    upload.entry = entry
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

    async def write_chunk(
        self, target: Path, index: int, data: memoryview, digest: ChunkDigest | None = None
    ) -> bool:
        """Verify and write chunk `index` (by its `digest` if one took all of `data` as it
        arrived, else hashing `data`); False if it was already committed (nothing written)."""
        upload = await self._require(target)
        length = await self.chunk_length(target, index)
        if len(data) != length:
            raise UploadError(400, "bad_length", f"chunk {index} has {length} bytes, not {len(data)}")
        if index in upload.committed:
            return False
        if upload.committing or index in upload.in_flight:
            raise UploadError(409, "chunk_in_flight", f"chunk {index} is being written or committed; retry")
        known = digest.chunk.hexdigest() if digest is not None and digest.taken == len(data) else None
        offset, expected = upload.entry.span(index)[0], upload.entry.chunks[index]
        upload.in_flight.add(index)
        upload.users += 1
        try:
            written = await asyncio.to_thread(
                files.verify_and_write,
                upload.fd,
                data,
                offset,
                expected,
                upload.write_lock,
                upload.direct_fd,
                known,
            )
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
        return True

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

    async def commit(
        self, target: Path, expected_sha256: str | None, expected_root: str | None = None
    ) -> tuple[bool, int]:
        """Check the upload holds every chunk of its entry (which must have `expected_root` as its
        chunk list's root and `expected_sha256` as the file's SHA-256, when given), fsync and rename
        it onto `target`: (committed now, chunk writes). An upload already committed (none open, the
        target matching `expected_sha256`) is (False, 0)."""
        upload = await self._get(target)
        if upload is None:
            held = expected_sha256 is not None and await asyncio.to_thread(
                files.holds, target, expected_sha256
            )
            if held:
                return False, 0
            raise UploadError(404, "no_upload", f"no upload of {target.name!r} is open")
        entry = upload.entry
        if (expected_root is not None and expected_root != entry.root()) or (
            expected_sha256 is not None and expected_sha256 != entry.sha256
        ):
            raise UploadError(409, "entry_mismatch", "the open upload was opened with another manifest entry")
        missing = set(range(len(entry.chunks))) - upload.committed
        if missing:
            raise UploadError(
                409, "chunks_missing", f"{len(missing)} chunks are missing", missing=to_ranges(missing)
            )
        if upload.committing:
            raise UploadError(409, "chunk_in_flight", "the upload is being committed; retry")
        upload.committing = True
        upload.users += 1
        try:
            bad, read_back = await asyncio.to_thread(_verify_and_install, upload)
        except OSError as exc:
            raise os_error(exc, "committing") from None
        finally:
            upload.committing = False
            upload.users -= 1
            self._close_if_idle(upload)
        self.read_back_chunks += read_back
        if upload.closing:
            raise UploadError(409, "upload_aborted", "the upload was aborted while it was committed")
        if bad:
            upload.committed -= bad
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
    back from memory). The chunk is then checked by it, not hashed again."""

    def __init__(self) -> None:
        self.chunk = hashlib.sha256()
        self.taken = 0  # bytes of the body in `chunk`

    def update(self, received: memoryview) -> None:
        """Take the bytes of `received` (the body so far) not taken yet."""
        self.chunk.update(received[self.taken :])
        self.taken = len(received)


def _same_file(held: UploadEntry, given: UploadEntry) -> bool:
    """Whether two entries describe the same file, one of them perhaps of the older form (no root:
    the root is a function of the rest, so it adds nothing to compare)."""
    return held.model_copy(update={"chunk_root": None}) == given.model_copy(update={"chunk_root": None})


def _verify_and_install(upload: _Upload) -> tuple[set[int], int]:
    """Read back what must be (see the module's docstring), then install the file: (the chunks
    that no longer match theirs, none if it was installed; how many chunks were read back)."""
    entry, count = upload.entry, len(upload.entry.chunks)
    if entry.chunk_root is None:  # the older form: the file's own SHA-256
        whole = hashlib.sha256()
        complete = files.hash_chunks_into(whole, upload.fd, entry, 0, count, bytearray(files.READ_BYTES))
        if not complete or whole.hexdigest() != entry.sha256:
            bad = files.changed_chunks(upload.fd, entry)
            if not bad:  # every chunk matches but the whole does not: the entry contradicts itself
                raise UploadError(
                    422, "manifest_mismatch", "the chunks match their hashes but not the file's SHA-256"
                )
            return bad, 2 * count
        read_back = count
    elif upload.reloaded:  # a write a crash lost would be recorded but not on disk
        bad = files.changed_chunks(upload.fd, entry)
        upload.reloaded = False  # the chunks kept were just checked; those dropped come again
        if bad:
            return bad, count
        read_back = count
    else:
        read_back = 0
    files.install(upload.fd, upload.target, entry.size_bytes)
    return set(), read_back
