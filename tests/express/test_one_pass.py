"""The destination's one SHA-256 pass (`connectors.uploads`): each chunk is checked by the digest
taken as it arrived and the file is never hashed again, yet a flipped byte, a chunk sent under
another index, a missing one and a truncated one are all refused before the commit; and the chunk
list's root (`connectors.manifest.chunk_list_root`) changes with any change of the list."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from connectors.manifest import CHUNK_LIST_TAG, chunk_list_root
from connectors.uploads import ChunkDigest, UploadError, Uploads
from tests.express.test_chunk_protocol import CHUNK, entry_for, piece


async def _write(uploads: Uploads, target: Path, index: int, data: bytes) -> bool:
    view = uploads.buffer(len(data))
    view[:] = data
    try:
        return await uploads.write_chunk(target, index, view)
    finally:
        uploads.release(view)


async def _refused(uploads: Uploads, target: Path, index: int, data: bytes) -> str:
    with pytest.raises(UploadError) as refused:
        await _write(uploads, target, index, data)
    return refused.value.code


def _take(digest: ChunkDigest, view: memoryview, upto: int, step: int = 16 << 10) -> None:
    """Hand `digest` the body up to `upto` bytes in steps, as the receiving thread does."""
    for end in range(digest.taken + step, upto + step, step):
        digest.update(view[: min(end, upto)])


async def test_chunks_in_any_order_commit_without_reading_anything_back(tmp_path: Path) -> None:
    """Chunks written out of order, each checked by the digest taken as it arrived: the commit
    reads nothing back (one SHA-256 pass in all) and the file is the source's bytes."""
    data = os.urandom(3 * CHUNK + 77)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    for index in (3, 1, 0, 2):
        view = uploads.buffer(len(piece(data, index)))
        view[:] = piece(data, index)
        digest = ChunkDigest()
        _take(digest, view, len(view))
        assert await uploads.write_chunk(target, index, view, digest)
        uploads.release(view)
    assert await uploads.commit(target, None) == (True, 4)
    assert target.read_bytes() == data
    assert uploads.read_back_chunks == 0


async def test_a_flipped_byte_is_refused_and_the_commit_waits_for_the_chunk(tmp_path: Path) -> None:
    """A chunk with one flipped bit is `bad_chunk` and recorded nowhere; the commit then reports
    it missing and installs nothing; sent right, the file commits."""
    data = os.urandom(2 * CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    spoilt = bytearray(piece(data, 1))
    spoilt[CHUNK // 2] ^= 0x10
    assert await _write(uploads, target, 0, piece(data, 0))
    assert await _refused(uploads, target, 1, bytes(spoilt)) == "bad_chunk"
    with pytest.raises(UploadError) as missing:
        await uploads.commit(target, None)
    assert (missing.value.code, missing.value.extra["missing"]) == ("chunks_missing", [[1, 2]])
    assert not target.exists()
    assert await _write(uploads, target, 1, piece(data, 1))
    assert await uploads.commit(target, None) == (True, 2)
    assert target.read_bytes() == data


async def test_reordered_duplicated_and_truncated_chunks_are_refused(tmp_path: Path) -> None:
    """Chunk 1's bytes sent as chunk 0 (reordered), chunk 0's sent again as chunk 2 (duplicated)
    and the last chunk cut short (a truncated file) are all refused; the commit reports exactly
    those chunks missing and installs nothing."""
    data = os.urandom(3 * CHUNK + 100)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    assert await _refused(uploads, target, 0, piece(data, 1)) == "bad_chunk"
    assert await _write(uploads, target, 1, piece(data, 1))
    assert await _refused(uploads, target, 2, piece(data, 0)) == "bad_chunk"
    assert await _refused(uploads, target, 3, piece(data, 3)[:-1]) == "bad_length"
    with pytest.raises(UploadError) as missing:
        await uploads.commit(target, None)
    assert missing.value.extra["missing"] == [[0, 1], [2, 4]]
    assert not target.exists()


async def test_a_digest_of_spoilt_bytes_refuses_the_chunk(tmp_path: Path) -> None:
    """The digest taken as the bytes arrived is what the chunk is checked by: bytes spoilt on the
    way are refused even if the buffer was (somehow) right afterwards, and nothing is recorded."""
    data = os.urandom(CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data))
    view = uploads.buffer(CHUNK)
    view[:] = data
    view[9] ^= 1
    digest = ChunkDigest()
    _take(digest, view, CHUNK)
    view[9] ^= 1
    with pytest.raises(UploadError) as refused:
        await uploads.write_chunk(target, 0, view, digest)
    assert refused.value.code == "bad_chunk"
    assert (await uploads.status(target)).committed == []  # type: ignore[union-attr]
    assert await _write(uploads, target, 0, data)
    uploads.release(view)
    assert await uploads.commit(target, None) == (True, 1)


async def test_an_upload_loaded_after_a_restart_hashes_its_chunks_again(tmp_path: Path) -> None:
    """An upload loaded from disk (a new `Uploads`, as after a restart) does not trust its recorded
    chunks: the commit reads them back once, finds one whose bytes a crash spoilt, and reports it
    missing; sent again, the file commits."""
    data = os.urandom(3 * CHUNK)
    target, before = tmp_path / "f.bin", Uploads()
    await before.open(target, entry_for(data))
    for index in range(3):
        assert await _write(before, target, index, piece(data, index))
    await before.close()
    with (tmp_path / "f.bin.cpnode-chunks").open("r+b") as handle:
        handle.seek(2 * CHUNK + 3)
        handle.write(b"\xff\x00")
    after = Uploads()
    with pytest.raises(UploadError) as missing:
        await after.commit(target, None)
    assert (missing.value.code, missing.value.extra["missing"]) == ("chunks_missing", [[2, 3]])
    assert after.read_back_chunks == 3
    assert await _write(after, target, 2, piece(data, 2))
    assert await after.commit(target, None) == (True, 3)
    assert target.read_bytes() == data


async def test_an_older_entry_is_hashed_whole_at_the_commit(tmp_path: Path) -> None:
    """An entry without a chunk root (the older form) is proven by the file's SHA-256, read back at
    the commit; one whose chunks contradict its SHA-256 is refused `manifest_mismatch`."""
    data = os.urandom(2 * CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data, older=True))
    for index in range(2):
        assert await _write(uploads, target, index, piece(data, index))
    assert await uploads.commit(target, None) == (True, 2)
    assert uploads.read_back_chunks == 2
    lying = entry_for(data, older=True).model_copy(update={"sha256": "0" * 64})
    await uploads.open(tmp_path / "g.bin", lying)
    for index in range(2):
        assert await _write(uploads, tmp_path / "g.bin", index, piece(data, index))
    with pytest.raises(UploadError) as refused:
        await uploads.commit(tmp_path / "g.bin", None)
    assert refused.value.code == "manifest_mismatch"
    assert not (tmp_path / "g.bin").exists()


def test_the_chunk_list_root_changes_with_any_change_of_the_list() -> None:
    """The root is a tagged SHA-256 over the chunk size, the file size and the ordered chunk hashes:
    reordering, dropping or repeating a chunk, or another size, gives another root, and it is not
    the plain SHA-256 of the hashes (domain separation)."""
    chunks = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    root = chunk_list_root(CHUNK, 3 * CHUNK, chunks)
    variants = [
        chunk_list_root(CHUNK, 3 * CHUNK, [chunks[1], chunks[0], chunks[2]]),
        chunk_list_root(CHUNK, 3 * CHUNK, chunks[:2]),
        chunk_list_root(CHUNK, 3 * CHUNK, [chunks[0], chunks[0], chunks[2]]),
        chunk_list_root(CHUNK, 3 * CHUNK - 1, chunks),
        chunk_list_root(2 * CHUNK, 3 * CHUNK, chunks),
        hashlib.sha256(b"".join(bytes.fromhex(c) for c in chunks)).hexdigest(),
    ]
    assert root not in variants
    assert len(set(variants)) == len(variants)
    expected = hashlib.sha256(
        CHUNK_LIST_TAG
        + CHUNK.to_bytes(8, "big")
        + (3 * CHUNK).to_bytes(8, "big")
        + b"".join(bytes.fromhex(c) for c in chunks)
    ).hexdigest()
    assert root == expected


async def test_an_upload_opened_in_the_older_form_resumes_with_the_root(tmp_path: Path) -> None:
    """An upload an older relay opened (no chunk root) keeps its chunks when a relay of this version
    opens it again with the root (the same file), and from then on commits without the whole-file
    read-back; an older relay opening an upload of this version resumes it too."""
    data = os.urandom(3 * CHUNK)
    target, uploads = tmp_path / "f.bin", Uploads()
    await uploads.open(target, entry_for(data, older=True))
    assert await _write(uploads, target, 0, piece(data, 0))
    status = await uploads.open(target, entry_for(data))
    assert status.committed == [[0, 1]]
    assert (await Uploads().open(target, entry_for(data, older=True))).committed == [[0, 1]]
    for index in (1, 2):
        assert await _write(uploads, target, index, piece(data, index))
    assert await uploads.commit(target, None, entry_for(data).root()) == (True, 3)
    assert (target.read_bytes(), uploads.read_back_chunks) == (data, 0)
