"""The manifest of a checkpoint's state files: what the data express moves and checks.

A manifest lists each file's path, size and SHA-256, and the SHA-256 of each of its chunks (chunk
i covers bytes [i·chunk_bytes, min((i+1)·chunk_bytes, size)); an empty file has no chunks). It is
canonical-JSON compatible (strings and integers only), so it can be signed as it is. The source's
storage endpoint builds it by streaming each file once (`hash_chunks`), so a file's SHA-256 and its
chunk hashes describe the same bytes; the destination checks every chunk it receives against it.

Upload entries name their chunk list's root (`chunk_list_root`: one SHA-256 over a domain tag,
the chunk size, the file size and the ordered chunk hashes). The destination then proves the file
without hashing it a second time: every chunk matched its hash as it landed, every index is held
once, and the commit names the root the entry was opened with. An entry without a root (the
older form) is still taken; its file is hashed whole at the commit instead.

Committed-chunk maps travel as ranges `[[start, end), ...]` of chunk indices (`to_ranges`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from connectors.contract import Bytes, Model, RelativePath, Sha256

MANIFEST_TYPE: Literal["cpnode.express-manifest"] = "cpnode.express-manifest"
MIN_CHUNK_BYTES = 4 << 10
MAX_CHUNK_BYTES = 64 << 20
MAX_FILES = 10_000
MAX_CHUNKS = 1 << 17  # per manifest: 128 Ki chunks of up to 64 MiB; the JSON stays under ~9 MB
CHUNK_LIST_TAG = b"cpnode.express.chunk-list.v1\x00"  # domain separation of `chunk_list_root`
ChunkBytes = Annotated[int, Field(ge=MIN_CHUNK_BYTES, le=MAX_CHUNK_BYTES)]


def chunk_count(size_bytes: int, chunk_bytes: int) -> int:
    """How many chunks a file of `size_bytes` has (0 for an empty file)."""
    return -(-size_bytes // chunk_bytes)


def chunk_span(size_bytes: int, chunk_bytes: int, index: int) -> tuple[int, int]:
    """(offset, length) of chunk `index` of a file of `size_bytes`."""
    offset = index * chunk_bytes
    if not 0 <= offset < size_bytes:
        raise ValueError(f"chunk {index} is outside a file of {size_bytes} bytes")
    return offset, min(chunk_bytes, size_bytes - offset)


def _check_chunks(size_bytes: int, chunk_bytes: int, chunks: list[str], what: str) -> None:
    expected = chunk_count(size_bytes, chunk_bytes)
    if len(chunks) != expected:
        raise ValueError(
            f"{what}: {size_bytes} bytes in chunks of {chunk_bytes} make {expected} chunks, "
            f"but {len(chunks)} chunk hashes are given"
        )


def chunk_list_root(chunk_bytes: int, size_bytes: int, chunks: list[str]) -> str:
    """The root (hex SHA-256) of a file's chunk list: the tag, chunk size and file size (8 bytes
    each, big-endian), then each chunk's 32-byte SHA-256 in order. A different order, a chunk more
    or less, another chunk size or length gives another root."""
    digest = hashlib.sha256(CHUNK_LIST_TAG)
    digest.update(chunk_bytes.to_bytes(8, "big"))
    digest.update(size_bytes.to_bytes(8, "big"))
    for chunk in chunks:
        digest.update(bytes.fromhex(chunk))
    return digest.hexdigest()


class ManifestFile(Model):
    """One state file: path inside the bucket, size, whole-file SHA-256 and per-chunk SHA-256."""

    path: RelativePath
    size_bytes: Bytes
    sha256: Sha256
    chunks: Annotated[list[Sha256], Field(max_length=MAX_CHUNKS)]


class Manifest(Model):
    """The files of one checkpoint, all cut in chunks of `chunk_bytes`."""

    type: Literal["cpnode.express-manifest"] = MANIFEST_TYPE
    version: Literal[1] = 1
    chunk_bytes: ChunkBytes
    files: Annotated[list[ManifestFile], Field(max_length=MAX_FILES)]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("a path appears twice in the manifest")
        for item in self.files:
            _check_chunks(item.size_bytes, self.chunk_bytes, item.chunks, item.path)
        if self.total_chunks > MAX_CHUNKS:
            raise ValueError(f"{self.total_chunks} chunks; a manifest holds at most {MAX_CHUNKS}")
        return self

    @property
    def total_bytes(self) -> int:
        """Bytes of all files together."""
        return sum(f.size_bytes for f in self.files)

    @property
    def total_chunks(self) -> int:
        """Chunks of all files together."""
        return sum(len(f.chunks) for f in self.files)

    def canonical(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, UTF-8): the bytes a signature covers."""
        return canonical_json(self.model_dump())

    def upload(self, item: ManifestFile) -> UploadEntry:
        """What the destination needs to accept `item`'s chunks (the manifest's entry without its
        path), naming its chunk list's root."""
        root = chunk_list_root(self.chunk_bytes, item.size_bytes, item.chunks)
        return UploadEntry(
            chunk_bytes=self.chunk_bytes,
            size_bytes=item.size_bytes,
            sha256=item.sha256,
            chunks=item.chunks,
            chunk_root=root,
        )


class UploadEntry(Model):
    """The body that opens a chunked upload at the destination: one file's manifest entry and the
    root of its chunk list (`chunk_list_root`; None in the older form, checked by a whole-file hash)."""

    chunk_bytes: ChunkBytes
    size_bytes: Bytes
    sha256: Sha256
    chunks: Annotated[list[Sha256], Field(max_length=MAX_CHUNKS)]
    chunk_root: Sha256 | None = None

    @model_validator(mode="after")
    def _consistent(self) -> UploadEntry:
        _check_chunks(self.size_bytes, self.chunk_bytes, self.chunks, "upload")
        if self.chunk_root is not None and self.chunk_root != self.root():
            raise ValueError("chunk_root is not the root of this chunk list")
        return self

    def root(self) -> str:
        """The root of this entry's chunk list (computed: also for an entry of the older form)."""
        return chunk_list_root(self.chunk_bytes, self.size_bytes, self.chunks)

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk `index`."""
        return chunk_span(self.size_bytes, self.chunk_bytes, index)


def canonical_json(value: object) -> bytes:
    """`value` as canonical JSON bytes (sorted keys, compact separators, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def to_ranges(indices: Iterable[int]) -> list[list[int]]:
    """Sorted chunk indices as `[[start, end), ...]` runs."""
    runs: list[list[int]] = []
    for index in sorted(set(indices)):
        if runs and runs[-1][1] == index:
            runs[-1][1] = index + 1
        else:
            runs.append([index, index + 1])
    return runs


def from_ranges(ranges: Iterable[Iterable[int]], limit: int) -> set[int]:
    """The chunk indices of `[[start, end), ...]` runs, each within `[0, limit)`."""
    indices: set[int] = set()
    for run in ranges:
        start, end = run
        if not 0 <= start < end <= limit:
            raise ValueError(f"chunk range {[start, end]} is outside [0, {limit})")
        indices.update(range(start, end))
    return indices


def hash_chunks(path: Path, chunk_bytes: int) -> tuple[int, str, list[str]]:
    """Read `path` once: (size, whole-file SHA-256, per-chunk SHA-256), all hex."""
    whole = hashlib.sha256()
    chunks: list[str] = []
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    size = 0
    with path.open("rb", buffering=0) as handle:
        while True:
            filled = 0
            while filled < chunk_bytes:
                got = handle.readinto(view[filled:])
                if not got:
                    break
                filled += got
            if not filled:
                break
            piece = view[:filled]
            whole.update(piece)
            chunks.append(hashlib.sha256(piece).hexdigest())
            size += filled
            if filled < chunk_bytes:
                break
    return size, whole.hexdigest(), chunks
