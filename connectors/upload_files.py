"""The files of a chunked upload and the blocking work on them (run in threads by `connectors.uploads`).

For a target file `NAME`, an open upload is three files beside it (hidden from listings and
unreachable by path, see `connectors.storage`):
- `NAME.cpnode-chunks`    the data, written at each chunk's offset;
- `NAME.cpnode-chunkmeta` the manifest entry the upload was opened with (JSON, written atomically);
- `NAME.cpnode-chunkmap`  the committed-chunk map: one line `i` appended per chunk once its bytes
  matched the entry's SHA-256 and were written. A torn last line (a crash mid-append) is ignored.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.manifest import UploadEntry

if TYPE_CHECKING:
    from hashlib import _Hash

DATA_SUFFIX = ".cpnode-chunks"
META_SUFFIX = ".cpnode-chunkmeta"
MAP_SUFFIX = ".cpnode-chunkmap"
UPLOAD_SUFFIXES = (DATA_SUFFIX, META_SUFFIX, MAP_SUFFIX)
READ_BYTES = 4 << 20
DIRECT_ALIGN = 4096  # offsets, lengths and buffers of O_DIRECT writes are multiples of this
DIRECT_ENV = "CPNODE_UPLOAD_O_DIRECT"  # "0": chunk writes go through the page cache (read per upload)
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FORBIDDEN = {errno.EACCES, errno.EPERM, errno.EROFS}


class UploadError(Exception):
    """A refused upload call: HTTP status, stable code, message and extra JSON fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra

    def as_json(self) -> dict[str, Any]:
        """The refused request's JSON answer: `{"error": code, "message": ..., **extra}`."""
        return {"error": self.code, "message": str(self), **self.extra}


def os_error(exc: OSError, doing: str) -> UploadError:
    """Translate a filesystem error: disk full and permission errors are fatal codes for the sender
    (507 `disk_full`, 403 `permission_denied`), anything else 503 `io_error` (worth a retry)."""
    if exc.errno in _DISK_FULL:
        return UploadError(507, "disk_full", f"no space left while {doing}: {exc.strerror}")
    if exc.errno in _FORBIDDEN:
        return UploadError(403, "permission_denied", f"not permitted while {doing}: {exc.strerror}")
    return UploadError(503, "io_error", f"I/O error while {doing}: {exc.strerror}")


def side(target: Path, suffix: str) -> Path:
    """The upload file of `target` with `suffix`."""
    return target.with_name(target.name + suffix)


def read_map(path: Path, limit: int) -> tuple[set[int], int]:
    """The committed chunks of a map file and how many lines it has (a torn last line ignored)."""
    text = path.read_bytes().decode("ascii", "replace")
    lines = text.split("\n")[:-1]  # everything after the last newline is a torn append
    indices = [int(line) for line in lines if line.isdigit() and int(line) < limit]
    return set(indices), len(indices)


def rewrite_map(path: Path, committed: set[int]) -> None:
    """Replace the map file with `committed` (atomically)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(f"{i}\n" for i in sorted(committed)), encoding="ascii")
    os.replace(temporary, path)


def write_meta(target: Path, entry: UploadEntry) -> None:
    """Store the entry an upload was opened with (atomically)."""
    meta = side(target, META_SUFFIX)
    temporary = meta.with_name(meta.name + ".tmp")
    temporary.write_text(entry.model_dump_json(), encoding="utf-8")
    os.replace(temporary, meta)


def remove_files(target: Path) -> None:
    """Remove an upload's files (not the target)."""
    for suffix in UPLOAD_SUFFIXES:
        side(target, suffix).unlink(missing_ok=True)


def holds(path: Path, sha256: str, size_bytes: int = -1) -> bool:
    """Whether `path` is a file (of `size_bytes`, if not -1) whose SHA-256 is `sha256`."""
    if not path.is_file() or size_bytes not in (-1, path.stat().st_size):
        return False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest() == sha256


def open_direct(path: Path) -> int:
    """`path` opened for writes that bypass the page cache (O_DIRECT), or -1 where that is refused
    or turned off (CPNODE_UPLOAD_O_DIRECT=0)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or os.environ.get(DIRECT_ENV, "1") == "0":
        return -1
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:
        return -1  # e.g. tmpfs: EINVAL


def verify_and_write(
    fd: int,
    data: memoryview,
    offset: int,
    expected: str,
    lock: threading.Lock,
    direct_fd: int = -1,
    known: str | None = None,
) -> bool:
    """Write `data` at `offset` if its SHA-256 (`known`, when it was taken as `data` arrived) is
    `expected`. Writes to one file take `lock`: threads writing the same file at once contend for
    its inode lock in the kernel, which spins.

    With `direct_fd` (the file opened O_DIRECT) a chunk whose buffer, offset and length are aligned
    goes to the device without the copy into the page cache (most of a buffered write's CPU here);
    any other (the file's last chunk, an unaligned buffer: EINVAL) is written through `fd`."""
    if (known if known is not None else hashlib.sha256(data).hexdigest()) != expected:
        return False
    with lock:
        if direct_fd >= 0 and not (offset | len(data)) % DIRECT_ALIGN:
            try:
                _write_all(direct_fd, data, offset)
                return True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
        _write_all(fd, data, offset)
    return True


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def hash_chunks_into(
    whole: _Hash, fd: int, entry: UploadEntry, start: int, end: int, buffer: bytearray
) -> bool:
    """Feed chunks [start, end) read from `fd` to `whole`; False if the data is shorter than the entry.
    Reads into `buffer`, reused from call to call (fresh memory per read costs page faults)."""
    view = memoryview(buffer)
    for index in range(start, end):
        offset, length = entry.span(index)
        while length:
            got = os.preadv(fd, [view[: min(length, len(buffer))]], offset)
            if not got:
                return False
            whole.update(view[:got])
            offset, length = offset + got, length - got
    return True


def changed_chunks(fd: int, entry: UploadEntry) -> set[int]:
    """The chunks whose data on disk no longer matches their SHA-256."""
    bad: set[int] = set()
    for index, expected in enumerate(entry.chunks):
        offset, length = entry.span(index)
        data = os.pread(fd, length, offset)
        if len(data) != length or hashlib.sha256(data).hexdigest() != expected:
            bad.add(index)
    return bad


def install(fd: int, target: Path, size_bytes: int) -> None:
    """fsync the data, rename it onto the target and fsync the directory."""
    os.ftruncate(fd, size_bytes)
    os.fsync(fd)
    os.replace(side(target, DATA_SUFFIX), target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
