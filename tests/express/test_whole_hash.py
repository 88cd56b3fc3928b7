"""The destination's SHA-256 passes (`connectors.uploads`): chunks written at once by K senders are
fed to the whole-file hash from memory in order, only chunks that arrived ahead of a gap are read
back from disk; a chunk's digest taken as it arrives checks it and carries the whole-file hash on."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors import upload_files
from connectors.uploads import ChunkDigest, UploadError, Uploads
from tests.express.test_chunk_protocol import CHUNK, entry_for, piece


def _meeting(monkeypatch: pytest.MonkeyPatch, parties: int) -> threading.Barrier:
    """Make every chunk write wait, before its hash is checked and it is written, until `parties`
    chunk writes are under way at once (the barrier breaks after 60 s: the test then fails)."""
    barrier = threading.Barrier(parties, timeout=60)
    real: Callable[..., bool] = upload_files.verify_and_write

    def meet_then_write(*args: Any, **kwargs: Any) -> bool:
        barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(upload_files, "verify_and_write", meet_then_write)
    return barrier


async def _write(uploads: Uploads, target: Path, index: int, data: bytes) -> bool:
    view = uploads.buffer(len(data))
    view[:] = data
    try:
        return await uploads.write_chunk(target, index, view)
    finally:
        uploads.release(view)


async def test_chunks_written_at_once_feed_the_whole_hash_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three chunks verified and written at the same time, the later ones finishing first: each
    waits for its turn and is fed from memory; the commit reads nothing back."""
    data = os.urandom(3 * CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    _meeting(monkeypatch, 3)
    written = await asyncio.gather(*(_write(uploads, target, i, piece(data, i)) for i in (2, 1, 0)))
    assert written == [True, True, True]
    assert await uploads.commit(target, None) == (True, 3)
    assert target.read_bytes() == data
    assert uploads.read_back_chunks == 0


async def test_a_chunk_ahead_of_a_gap_is_read_back(tmp_path: Path) -> None:
    """A chunk written while nothing before it is being written does not wait: it is read back
    once the gap is filled, and the file still commits whole."""
    data = os.urandom(3 * CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    assert await _write(uploads, target, 2, piece(data, 2))
    assert await _write(uploads, target, 0, piece(data, 0))
    assert await _write(uploads, target, 1, piece(data, 1))
    assert await uploads.commit(target, None) == (True, 3)
    assert target.read_bytes() == data
    assert uploads.read_back_chunks == 1  # chunk 2; chunks 0 and 1 were fed from memory


async def test_a_chunk_waiting_behind_a_bad_one_is_read_back_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 1 waits for chunk 0, which turns out bad: chunk 1 stops waiting, and once chunk 0 is
    sent again the whole file is hashed right (chunk 1 read back) and commits."""
    data = os.urandom(2 * CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    bad = bytearray(piece(data, 0))
    bad[0] ^= 1
    _meeting(monkeypatch, 2)
    rejected, written = await asyncio.gather(
        _write(uploads, target, 0, bytes(bad)),
        _write(uploads, target, 1, piece(data, 1)),
        return_exceptions=True,
    )
    assert getattr(rejected, "code", None) == "bad_chunk"
    assert written is True
    monkeypatch.undo()
    assert await _write(uploads, target, 0, piece(data, 0))
    assert await uploads.commit(target, None) == (True, 2)
    assert target.read_bytes() == data
    assert uploads.read_back_chunks == 1


def _take(digest: ChunkDigest, view: memoryview, upto: int, step: int = 16 << 10) -> None:
    """Hand `digest` the body up to `upto` bytes in steps, as the receiving thread does."""
    for end in range(digest.taken + step, upto + step, step):
        digest.update(view[: min(end, upto)])


async def test_digests_taken_as_chunks_arrive_check_them_and_carry_the_whole_hash(tmp_path: Path) -> None:
    """Chunk 1 starts arriving while chunk 0 is the next one for the whole-file hash, and becomes
    next halfway: its digest catches up then carries the hash on. Neither chunk is hashed again
    after it arrived, nothing is read back, and the file commits whole."""
    data = os.urandom(2 * CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    views = [uploads.buffer(CHUNK), uploads.buffer(CHUNK)]
    for index, view in enumerate(views):
        view[:] = piece(data, index)
    first, second = await uploads.digest(target, 0), await uploads.digest(target, 1)
    _take(first, views[0], CHUNK)
    _take(second, views[1], CHUNK // 2)
    assert [digest.whole is not None for digest in (first, second)] == [True, False]  # not 1's turn yet
    assert await uploads.write_chunk(target, 0, views[0], first)
    _take(second, views[1], CHUNK)
    assert second.whole is not None
    assert await uploads.write_chunk(target, 1, views[1], second)
    for view in views:
        uploads.release(view)
    assert await uploads.commit(target, None) == (True, 2)
    assert target.read_bytes() == data
    assert uploads.read_back_chunks == 0


async def test_a_digest_of_spoilt_bytes_refuses_the_chunk(tmp_path: Path) -> None:
    """The digest taken as the bytes arrived is what the chunk is checked by: bytes spoilt on the
    way are refused even if the buffer was (somehow) right afterwards, and nothing is recorded."""
    data = os.urandom(CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    view = uploads.buffer(CHUNK)
    view[:] = data
    view[9] ^= 1
    digest = await uploads.digest(target, 0)
    _take(digest, view, CHUNK)
    view[9] ^= 1
    with pytest.raises(UploadError) as refused:
        await uploads.write_chunk(target, 0, view, digest)
    assert refused.value.code == "bad_chunk"
    assert (await uploads.status(target)).committed == []  # type: ignore[union-attr]
    assert await _write(uploads, target, 0, data)
    uploads.release(view)
    assert await uploads.commit(target, None) == (True, 1)
