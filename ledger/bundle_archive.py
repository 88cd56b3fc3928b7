"""An audit bundle as one file to download or upload: a tar archive, gzip-compressed, of the bundle's
flat folder (under one top folder, or none).

Packing takes the bundle's regular files with plain names. Unpacking trusts nothing in the archive:
- the decompressed stream is read through a counter and stops past `MAX_UNPACKED_BYTES` (so a small
  upload cannot expand without bound);
- at most `MAX_MEMBERS` entries; every file must be a regular file (no links, devices, FIFOs) whose
  name is a plain bundle file name (`bundle_files.NAME_RE`), optionally under one plain top folder,
  so nothing is written outside the target folder; a name seen twice is refused;
- each file's size is capped (`bundle_files.MAX_FILE_BYTES`) before a byte of it is written, and is
  written with O_EXCL|O_NOFOLLOW into the (new, empty) target folder.
Every refusal is an `AuditError` naming the entry (or `archive` for the archive as a whole).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO, cast

from ledger.bundle_files import MAX_FILE_BYTES, is_plain_name
from ledger.errors import AuditError

ARCHIVE = "archive"
"""How a refusal names the archive as a whole."""
MAX_MEMBERS = 32
"""Entries an archive may hold (a bundle has eight files and its folder)."""
MAX_UNPACKED_BYTES = 1024**3
"""Cap on the decompressed archive, headers included."""
_CHUNK_BYTES = 1024 * 1024


class _Capped(io.RawIOBase):
    """A read-only stream that refuses to yield more than `limit` bytes of `inner`."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill `buffer` from the inner stream, or refuse once the cap is passed."""
        data = self._inner.read(len(buffer))
        self._left -= len(data)
        if self._left < 0:
            raise AuditError(ARCHIVE, f"expands past {MAX_UNPACKED_BYTES} bytes; refused")
        buffer[: len(data)] = data
        return len(data)


def pack(directory: Path, out: BinaryIO, top: str) -> list[str]:
    """Write the bundle in `directory` to `out` as a tar.gz with its files under `top/`; the names."""
    if not is_plain_name(top):
        raise ValueError(f"{top!r} is not a plain folder name")
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and is_plain_name(p.name))

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o644
        return info

    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            tar.add(directory / name, arcname=f"{top}/{name}", recursive=False, filter=plain)
    return names


def _file_name(member: tarfile.TarInfo, tops: set[str]) -> str | None:
    """The bundle file name of `member` (None for its top folder); AuditError for anything else."""
    parts = member.name.removeprefix("./").rstrip("/").split("/") if member.isdir() else None
    if parts is not None:
        if len(parts) == 1 and is_plain_name(parts[0]):
            tops.add(parts[0])
            return None
        raise AuditError(member.name, "is a folder inside the bundle folder; a bundle is flat")
    if not member.isreg():
        raise AuditError(member.name, "is not a regular file (a link, device or FIFO); refused")
    parts = member.name.removeprefix("./").split("/")
    if len(parts) == 2 and is_plain_name(parts[0]):
        tops.add(parts[0])
    elif len(parts) != 1:
        raise AuditError(member.name, "is not a plain file name inside the bundle")
    if len(tops) > 1:
        raise AuditError(member.name, "is in a second top folder; an archive holds one bundle")
    if not is_plain_name(parts[-1]):
        raise AuditError(member.name, "is not a plain file name inside the bundle")
    return parts[-1]


def unpack(archive: BinaryIO, directory: Path) -> list[str]:
    """Unpack the uploaded bundle `archive` (tar or tar.gz) into the new, empty folder `directory`,
    checking every entry as the module says; the file names written."""
    head = archive.read(2)
    archive.seek(0)
    source: BinaryIO = (
        cast(BinaryIO, gzip.GzipFile(fileobj=archive, mode="rb")) if head == b"\x1f\x8b" else archive
    )
    capped = io.BufferedReader(_Capped(source, MAX_UNPACKED_BYTES), _CHUNK_BYTES)
    written: list[str] = []
    tops: set[str] = set()
    try:
        with tarfile.open(fileobj=capped, mode="r|") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise AuditError(ARCHIVE, f"holds more than {MAX_MEMBERS} entries; refused")
                name = _file_name(member, tops)
                if name is None:
                    continue
                if name in written:
                    raise AuditError(member.name, "appears twice in the archive")
                if member.size > MAX_FILE_BYTES:
                    raise AuditError(
                        member.name, f"has {member.size} bytes, more than the {MAX_FILE_BYTES} allowed"
                    )
                _write(tar, member, directory / name)
                written.append(name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AuditError(ARCHIVE, f"is not a tar or tar.gz archive of a bundle ({exc})") from None
    if not written:
        raise AuditError(ARCHIVE, "holds no bundle files")
    return written


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has its data
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
        left = member.size
        while left > 0:
            chunk = source.read(min(_CHUNK_BYTES, left))
            if not chunk:
                raise AuditError(member.name, "is cut short in the archive")
            out.write(chunk)
            left -= len(chunk)
