"""Chunked uploads at the destination: chunks in any order, each verified, a durable committed-chunk map.

For a target file `NAME`, an open upload is three files beside it (hidden from listings and
unreachable by path):
- `NAME.cpnode-chunks`    the data, written at each chunk's offset;
- `NAME.cpnode-chunkmeta` the manifest entry the upload was opened with (JSON, written atomically);
- `NAME.cpnode-chunkmap`  the committed-chunk map: one line `i` appended per chunk once its bytes
  matched the entry's SHA-256 and were written. A torn last line (a crash mid-append) is ignored.

So a restarted server knows which chunks it holds, a chunk already in the map is never written
again, and a chunk whose bytes do not match is refused (`bad_chunk`) and recorded nowhere.
Committing re-reads the data, checks the whole-file SHA-256, fsyncs and renames it onto `NAME`
(then fsyncs the directory). If the whole file does not match, the chunks that no longer match
their hash are dropped from the map and reported missing, so only they are sent again.

Errors are `UploadError(status, code, message)`; disk full (ENOSPC, EDQUOT, EFBIG) is 507
`disk_full` and permission errors (EACCES, EPERM, EROFS) 403 `permission_denied`, both fatal for
the sender. Blocking file work runs in threads; the event loop only keeps the bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connectors.manifest import UploadEntry, from_ranges, to_ranges

DATA_SUFFIX = ".cpnode-chunks"
META_SUFFIX = ".cpnode-chunkmeta"
MAP_SUFFIX = ".cpnode-chunkmap"
UPLOAD_SUFFIXES = (DATA_SUFFIX, META_SUFFIX, MAP_SUFFIX)
_READ_BYTES = 4 << 20
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FORBIDDEN = {errno.EACCES, errno.EPERM, errno.EROFS}


class UploadError(Exception):
    """A refused upload call: HTTP status, stable code, message and extra JSON fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


def os_error(exc: OSError, doing: str) -> UploadError:
    """Translate a filesystem error: disk full and permission errors are fatal codes."""
    if exc.errno in _DISK_FULL:
        return UploadError(507, "disk_full", f"no space left while {doing}: {exc.strerror}")
    if exc.errno in _FORBIDDEN:
        return UploadError(403, "permission_denied", f"not permitted while {doing}: {exc.strerror}")
    return UploadError(503, "io_error", f"I/O error while {doing}: {exc.strerror}")


def _side(target: Path, suffix: str) -> Path:
    return target.with_name(target.name + suffix)


@dataclass
class _Upload:
    target: Path
    entry: UploadEntry
    fd: int
    map_fd: int
    committed: set[int]
    writes: int
    in_flight: set[int] = field(default_factory=set)
    committing: bool = False
    closing: bool = False  # forgotten while a thread still used its files: the last user closes them


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


def _read_map(path: Path, limit: int) -> tuple[set[int], int]:
    """The committed chunks of a map file and how many lines it has (a torn last line ignored)."""
    text = path.read_bytes().decode("ascii", "replace")
    lines = text.split("\n")[:-1]  # everything after the last newline is a torn append
    indices = [int(line) for line in lines if line.isdigit() and int(line) < limit]
    return set(indices), len(indices)


def _holds(path: Path, sha256: str, size_bytes: int = -1) -> bool:
    """Whether `path` is a file (of `size_bytes`, if not -1) whose SHA-256 is `sha256`."""
    if not path.is_file() or size_bytes not in (-1, path.stat().st_size):
        return False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_READ_BYTES):
            digest.update(block)
    return digest.hexdigest() == sha256


class Uploads:
    """Every open chunked upload of one storage service, loaded from disk on first use."""

    def __init__(self, max_in_flight_bytes: int = 256 << 20) -> None:
        self._open: dict[Path, _Upload] = {}
        self._lock = asyncio.Lock()
        self.max_in_flight_bytes = max_in_flight_bytes
        self._in_flight_bytes = 0

    async def _get(self, target: Path) -> _Upload | None:
        upload = self._open.get(target)
        if upload is not None:
            return upload
        meta = _side(target, META_SUFFIX)
        if not meta.is_file():
            return None
        try:
            entry = UploadEntry.model_validate_json(meta.read_bytes())
            committed, writes = _read_map(_side(target, MAP_SUFFIX), len(entry.chunks))
            fd = os.open(_side(target, DATA_SUFFIX), os.O_RDWR | os.O_CREAT, 0o600)
            map_fd = os.open(_side(target, MAP_SUFFIX), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except (OSError, ValidationError, ValueError):
            self._remove_files(target)  # an unreadable upload is started again by its sender
            return None
        upload = _Upload(target, entry, fd, map_fd, committed, writes)
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
        """Open (or resume, if opened with the same entry) the upload of `target`. A different entry
        replaces the upload; a target that already holds the entry's file is reported complete."""
        async with self._lock:
            upload = await self._get(target)
            if upload is not None and upload.entry == entry:
                return self._status(upload)
            if upload is not None:
                self._close(upload)
                self._remove_files(target)
            if await asyncio.to_thread(_holds, target, entry.sha256, entry.size_bytes):
                return UploadStatus(len(entry.chunks), to_ranges(range(len(entry.chunks))), True, 0)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if shutil.disk_usage(target.parent).free < entry.size_bytes:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                meta = _side(target, META_SUFFIX)
                temporary = meta.with_name(meta.name + ".tmp")
                temporary.write_text(entry.model_dump_json(), encoding="utf-8")
                os.replace(temporary, meta)
                fd = os.open(_side(target, DATA_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
                map_fd = os.open(_side(target, MAP_SUFFIX), flags, 0o600)
            except OSError as exc:
                self._remove_files(target)
                raise os_error(exc, "opening the upload") from None
            upload = _Upload(target, entry, fd, map_fd, set(), 0)
            self._open[target] = upload
            return self._status(upload)

    async def write_chunk(self, target: Path, index: int, data: bytes) -> bool:
        """Verify and write chunk `index`; False if it was already committed (nothing written)."""
        upload = await self._require(target)
        if not 0 <= index < len(upload.entry.chunks):
            raise UploadError(
                400, "invalid_request", f"chunk {index} is outside 0–{len(upload.entry.chunks) - 1}"
            )
        if index in upload.committed:
            return False
        if upload.committing or index in upload.in_flight:
            raise UploadError(409, "chunk_in_flight", f"chunk {index} is being written or committed; retry")
        offset, length = upload.entry.span(index)
        if len(data) != length:
            raise UploadError(400, "bad_length", f"chunk {index} has {length} bytes, got {len(data)}")
        upload.in_flight.add(index)
        try:
            matches = await asyncio.to_thread(
                _verify_and_write, upload.fd, data, offset, upload.entry.chunks[index]
            )
            if not matches:
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
            self._close_if_idle(upload)
        upload.committed.add(index)
        upload.writes += 1
        return True

    def reserve(self, length: int) -> None:
        """Count `length` bytes of a chunk body being received; 503 `busy` past the service's budget."""
        if self._in_flight_bytes + length > self.max_in_flight_bytes:
            raise UploadError(503, "busy", "too many chunk bytes in flight; retry shortly")
        self._in_flight_bytes += length

    def release(self, length: int) -> None:
        """Give back what `reserve` counted."""
        self._in_flight_bytes -= length

    async def expected_length(self, target: Path, index: int) -> int:
        """The byte length of chunk `index` of the open upload of `target`."""
        upload = await self._require(target)
        if not 0 <= index < len(upload.entry.chunks):
            raise UploadError(
                400, "invalid_request", f"chunk {index} is outside 0–{len(upload.entry.chunks) - 1}"
            )
        return upload.entry.span(index)[1]

    async def commit(self, target: Path, expected_sha256: str | None) -> tuple[bool, int]:
        """Verify the whole file, fsync and rename it onto `target`: (committed now, chunk writes).
        An upload already committed (none open, the target matching `expected_sha256`) is (False, 0)."""
        upload = await self._get(target)
        if upload is None:
            held = expected_sha256 is not None and await asyncio.to_thread(_holds, target, expected_sha256)
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
        try:
            bad = await asyncio.to_thread(_verify_file, upload)
            if bad is None:
                await asyncio.to_thread(_install, upload)
        except OSError as exc:
            raise os_error(exc, "committing") from None
        finally:
            upload.committing = False
            self._close_if_idle(upload)
        if upload.closing:
            raise UploadError(409, "upload_aborted", "the upload was aborted while it was committed")
        if bad:
            upload.committed -= bad
            _rewrite_map(upload)
            raise UploadError(
                409, "chunks_missing", f"{len(bad)} chunks changed on disk", missing=to_ranges(bad)
            )
        self._close(upload)
        self._remove_files(target)
        return True, upload.writes

    async def abort(self, target: Path) -> bool:
        """Forget the upload of `target` and remove its files; False if none was open."""
        async with self._lock:
            upload = await self._get(target)
            if upload is not None:
                self._close(upload)
            self._remove_files(target)
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
        # A thread may still be writing through these descriptors; closing them under it could
        # let a reused descriptor number receive its bytes.
        if upload.closing and not upload.in_flight and not upload.committing and upload.fd >= 0:
            for fd in (upload.fd, upload.map_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            upload.fd = upload.map_fd = -1

    @staticmethod
    def _remove_files(target: Path) -> None:
        for suffix in UPLOAD_SUFFIXES:
            _side(target, suffix).unlink(missing_ok=True)


def _verify_and_write(fd: int, data: bytes, offset: int, expected: str) -> bool:
    """Write `data` at `offset` if its SHA-256 is `expected` (runs in a thread)."""
    if hashlib.sha256(data).hexdigest() != expected:
        return False
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
    return True


def _verify_file(upload: _Upload) -> set[int] | None:
    """None if the data matches the whole-file SHA-256, else the chunks that no longer match theirs
    (read a second time only then: a mismatch after every chunk was checked on arrival is rare)."""
    entry = upload.entry
    whole = hashlib.sha256()
    offset = 0
    while offset < entry.size_bytes:
        data = os.pread(upload.fd, min(_READ_BYTES, entry.size_bytes - offset), offset)
        if not data:
            break
        whole.update(data)
        offset += len(data)
    if offset == entry.size_bytes and whole.hexdigest() == entry.sha256:
        return None
    bad: set[int] = set()
    for index, expected in enumerate(entry.chunks):
        start, length = entry.span(index)
        data = os.pread(upload.fd, length, start)
        if len(data) != length or hashlib.sha256(data).hexdigest() != expected:
            bad.add(index)
    if not bad:  # every chunk matches but the whole does not: the entry contradicts itself
        raise UploadError(
            422, "manifest_mismatch", "the chunks match their hashes but not the file's SHA-256"
        )
    return bad


def _install(upload: _Upload) -> None:
    """fsync the data, rename it onto the target and fsync the directory."""
    os.ftruncate(upload.fd, upload.entry.size_bytes)
    os.fsync(upload.fd)
    os.replace(_side(upload.target, DATA_SUFFIX), upload.target)
    directory = os.open(upload.target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _rewrite_map(upload: _Upload) -> None:
    path = _side(upload.target, MAP_SUFFIX)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(f"{i}\n" for i in sorted(upload.committed)), encoding="ascii")
    os.replace(temporary, path)
    os.close(upload.map_fd)
    upload.map_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    upload.writes = len(upload.committed)


def parse_missing(body: dict[str, Any], limit: int) -> set[int]:
    """The chunk indices a `chunks_missing` answer lists."""
    return from_ranges(body.get("missing", []), limit)
