"""Reading an audit bundle's files without trusting the folder they are in.

A bundle comes from whoever hands it to the auditor, so before a byte is read:
- a name must be a plain file name (`NAME_RE`: no separators, no `.`/`..`, not absolute), so every
  file is inside the bundle folder, whatever a (signed) manifest lists;
- the file is opened without following a symbolic link (O_NOFOLLOW) and without blocking
  (O_NONBLOCK, so a FIFO cannot hang the open), then must be a regular file (fstat);
- its size must be within the cap (the size the signed manifest gives, or a fixed cap for the
  checkpoint and the manifest read before it), and no more than that is ever read.
Every refusal is an `AuditError` naming the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

from ledger import bundle as fmt
from ledger.errors import AuditError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A bundle file name: what `ledger.bundle` writes, and nothing that could leave the folder."""
SMALL_FILE_BYTES = 64 * 1024
"""Cap on the files read before the manifest's sizes are known (checkpoint, manifest)."""
MAX_FILE_BYTES = 4 * 1024**3
"""Cap on any bundle file, whatever its manifest says (a signed manifest may still be hostile)."""
_READ_CHUNK_BYTES = 1024 * 1024
REQUIRED_FILES = (
    fmt.CHECKPOINT,
    fmt.TRANSFERS,
    fmt.OPENING_HOLDS,
    fmt.ACCOUNTS,
    fmt.OPENING_BALANCES,
    fmt.BALANCES,
    fmt.PROOFS,
)


def is_plain_name(name: object) -> bool:
    """Whether `name` is a plain file name inside a bundle folder."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def read_file(directory: Path, name: str, max_bytes: int) -> bytes:
    """The bytes of the regular file `name` in `directory`, at most `max_bytes` of them; AuditError
    (naming the file) for a bad name, a missing file, a link, a FIFO or device, or one too large."""
    if not is_plain_name(name):
        raise AuditError(name, "is not a plain file name inside the bundle")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(directory / name, flags)
    except FileNotFoundError:
        raise AuditError(name, "file is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AuditError(name, "is a symbolic link; a bundle holds regular files only") from None
        raise AuditError(name, f"cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditError(name, "is not a regular file (a FIFO, device or directory); refused")
        limit = min(max_bytes, MAX_FILE_BYTES)
        if info.st_size > limit:
            raise AuditError(name, f"has {info.st_size} bytes, more than the {limit} allowed")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(_READ_CHUNK_BYTES, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise AuditError(name, f"grew past the {limit} bytes allowed while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise AuditError(name, f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def file_entries(files: Any) -> dict[str, dict[str, Any]]:
    """The signed manifest's file list, checked: every required file listed, plain names only, each
    with its size (what `read_file` is then capped at)."""
    if not isinstance(files, dict) or not set(REQUIRED_FILES) <= set(files):
        raise AuditError(fmt.MANIFEST, "does not list every required file")
    for name, entry in files.items():
        if not is_plain_name(name):
            raise AuditError(
                fmt.MANIFEST, f"lists {name!r}, which is not a plain file name inside the bundle"
            )
        if not isinstance(entry, dict):
            raise AuditError(fmt.MANIFEST, f"the entry of {name!r} is not an object")
        size = entry.get("bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise AuditError(fmt.MANIFEST, f"the size of {name!r} is not a non-negative integer")
    return files
