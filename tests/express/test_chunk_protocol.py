"""The storage endpoint's manifest and verified-chunk calls, against a real `cpnode-storage` process."""

from __future__ import annotations

import hashlib
import os
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.manifest import Manifest, UploadEntry, chunk_list_root, hash_chunks
from connectors.upload_files import DIRECT_ENV, open_direct
from tests.support.express import BUCKET, MIB, Storage, random_file

CHUNK = 64 << 10


class Endpoint:
    """Raw calls to one bucket of a storage process."""

    def __init__(self, session: aiohttp.ClientSession, storage: Storage) -> None:
        self.session, self.storage = session, storage
        self.base = f"{storage.url}/storage/v1/{BUCKET}"

    async def call(self, method: str, tail: str, **kwargs: Any) -> tuple[int, Any]:
        """One call with the bucket's token: (status, JSON body or None)."""
        headers = {"Authorization": f"Bearer {self.storage.token}", **kwargs.pop("headers", {})}
        async with self.session.request(method, self.base + tail, headers=headers, **kwargs) as response:
            body = await response.read()
            return response.status, (await response.json(content_type=None)) if body else None

    async def open(self, path: str, entry: UploadEntry) -> tuple[int, Any]:
        """Open (or resume) the chunked upload of `path`."""
        return await self.call("POST", f"/{path}?chunked", json=entry.model_dump())

    async def put(self, path: str, index: int, data: bytes) -> tuple[int, Any]:
        """Send chunk `index` of `path`."""
        return await self.call("PUT", f"/{path}?chunk={index}", data=data)

    async def commit(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """Commit the upload of `path`."""
        return await self.call("POST", f"/{path}?commit", headers=headers or {})


@pytest.fixture(name="endpoint")
async def fixture_endpoint(destination: Storage) -> AsyncIterator[Endpoint]:
    """Raw calls to the destination process's bucket (a connection per call: it may be restarted)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield Endpoint(session, destination)


def entry_for(data: bytes, chunk: int = CHUNK, older: bool = False) -> UploadEntry:
    """The upload entry of `data` in chunks of `chunk`, naming its chunk list's root (not `older`)."""
    chunks = [hashlib.sha256(data[i : i + chunk]).hexdigest() for i in range(0, len(data), chunk)]
    whole = hashlib.sha256(data).hexdigest()
    root = None if older else chunk_list_root(chunk, len(data), chunks)
    return UploadEntry(chunk_bytes=chunk, size_bytes=len(data), sha256=whole, chunks=chunks, chunk_root=root)


def piece(data: bytes, index: int) -> bytes:
    """Chunk `index` of `data`."""
    return data[index * CHUNK : (index + 1) * CHUNK]


async def test_manifest_is_built_by_the_source_in_one_read(source: Storage) -> None:
    """GET ?manifest answers every file with whole and per-chunk SHA-256, equal to hashing it here;
    a chunk size out of bounds is 400."""
    whole = random_file(source.bucket / "a" / "big.bin", 300_000)
    (source.bucket / "empty").write_bytes(b"")
    async with aiohttp.ClientSession() as session:
        endpoint = Endpoint(session, source)
        status, body = await endpoint.call("GET", f"?manifest&chunk_bytes={CHUNK}")
        assert status == 200
        manifest = Manifest.model_validate(body)
        assert [f.path for f in manifest.files] == ["a/big.bin", "empty"]
        big = manifest.files[0]
        assert (big.size_bytes, big.sha256) == (300_000, whole)
        assert big.chunks == hash_chunks(source.bucket / "a" / "big.bin", CHUNK)[2]
        assert len(big.chunks) == 5
        assert manifest.files[1].chunks == []
        assert manifest.canonical() == Manifest.model_validate_json(manifest.canonical()).canonical()
        assert (await endpoint.call("GET", "?manifest&chunk_bytes=12"))[0] == 400


async def test_chunks_in_any_order_are_verified_recorded_and_committed(
    endpoint: Endpoint, destination: Storage
) -> None:
    """Chunks arrive in any order; a bad chunk is 422 and recorded nowhere; a chunk already held is
    not written again; commit checks every chunk is held, renames the file and leaves no machinery
    behind."""
    data = os.urandom(5 * CHUNK + 123)
    entry = entry_for(data)
    status, body = await endpoint.open("dir/f.bin", entry)
    assert (status, body["committed"], body["complete"]) == (200, [], False)
    for index in (5, 0, 3):
        assert (await endpoint.put("dir/f.bin", index, piece(data, index)))[0] == 201
    bad = bytearray(piece(data, 1))
    bad[7] ^= 1
    status, body = await endpoint.put("dir/f.bin", 1, bytes(bad))
    assert (status, body["error"]) == (422, "bad_chunk")
    status, body = await endpoint.put("dir/f.bin", 3, piece(data, 3))
    assert (status, body["written"]) == (200, False)
    status, body = await endpoint.commit("dir/f.bin")
    assert (status, body["error"], body["missing"]) == (409, "chunks_missing", [[1, 3], [4, 5]])
    for index in (4, 1, 2):
        assert (await endpoint.put("dir/f.bin", index, piece(data, index)))[0] == 201
    status, body = await endpoint.call("GET", "/dir/f.bin?chunked")
    assert (body["committed"], body["chunk_writes"]) == ([[0, 6]], 6)
    status, body = await endpoint.commit("dir/f.bin")
    assert (status, body["chunk_writes"]) == (201, 6)
    assert (destination.bucket / "dir" / "f.bin").read_bytes() == data
    assert destination.files() == ["dir/f.bin"]
    again = await endpoint.call("POST", "/dir/f.bin?commit", headers={"X-Content-SHA256": entry.sha256})
    assert again[0] == 200
    status, body = await endpoint.open("dir/f.bin", entry)
    assert body["complete"] is True


async def test_committed_chunk_map_survives_a_restart(endpoint: Endpoint, destination: Storage) -> None:
    """After the storage process is killed and started again, the upload holds the same chunks: a
    held chunk is not written again, the rest complete the file."""
    data = os.urandom(4 * CHUNK)
    entry = entry_for(data)
    await endpoint.open("f.bin", entry)
    for index in (0, 2):
        assert (await endpoint.put("f.bin", index, piece(data, index)))[0] == 201
    destination.kill()
    destination.start()
    status, body = await endpoint.open("f.bin", entry)
    assert (status, body["committed"], body["chunk_writes"]) == (200, [[0, 1], [2, 3]], 2)
    assert (await endpoint.put("f.bin", 2, piece(data, 2)))[1]["written"] is False
    for index in (1, 3):
        assert (await endpoint.put("f.bin", index, piece(data, index)))[0] == 201
    status, body = await endpoint.commit("f.bin")
    assert (status, body["chunk_writes"]) == (201, 4)
    assert (destination.bucket / "f.bin").read_bytes() == data


async def test_commit_finds_chunks_changed_on_disk(endpoint: Endpoint, destination: Storage) -> None:
    """A chunk recorded but damaged on disk while the server was down (a write a crash lost) is
    found at commit (the chunks of an upload loaded after a restart are hashed again), dropped from
    the map and reported missing; sent again, the file commits correctly."""
    data = os.urandom(3 * CHUNK)
    await endpoint.open("f.bin", entry_for(data))
    for index in range(3):
        await endpoint.put("f.bin", index, piece(data, index))
    destination.kill()
    with (destination.bucket / "f.bin.cpnode-chunks").open("r+b") as handle:
        handle.seek(CHUNK + 10)
        handle.write(b"\x00\x01\x02")
    destination.start()
    status, body = await endpoint.commit("f.bin")
    assert (status, body["missing"]) == (409, [[1, 2]])
    assert (await endpoint.put("f.bin", 1, piece(data, 1)))[0] == 201
    assert (await endpoint.commit("f.bin"))[0] == 201
    assert (destination.bucket / "f.bin").read_bytes() == data


async def test_bad_requests_are_refused_and_change_nothing(endpoint: Endpoint, destination: Storage) -> None:
    """Escaping and reserved paths, a malformed entry, a wrong length, an unknown chunk and a chunk
    for no upload are 4xx and leave the bucket empty."""
    data = os.urandom(2 * CHUNK)
    entry = entry_for(data)
    assert (await endpoint.open("a%2F..%2F..%2Fx", entry))[0] == 400
    assert (await endpoint.open("f.cpnode-chunkmap", entry))[0] == 400
    bad_entry = {**entry.model_dump(), "chunks": entry.chunks[:1]}
    status, body = await endpoint.call("POST", "/f.bin?chunked", json=bad_entry)
    assert (status, body["error"]) == (400, "invalid_request")
    assert (await endpoint.call("POST", "/f.bin?chunked", data=b"{not json"))[0] == 400
    assert (await endpoint.put("f.bin", 0, piece(data, 0)))[1]["error"] == "no_upload"
    assert destination.files() == []
    await endpoint.open("f.bin", entry)
    assert (await endpoint.put("f.bin", 0, piece(data, 0)[:-1]))[1]["error"] == "bad_length"
    assert (await endpoint.put("f.bin", 2, b"x"))[0] == 400
    assert (await endpoint.call("PUT", "/f.bin?chunk=-1", data=b"x"))[0] == 400
    assert (await endpoint.call("GET", "/f.bin?chunked"))[1]["committed"] == []
    assert (await endpoint.call("DELETE", "/f.bin?chunked"))[0] == 204
    assert destination.files() == []


async def test_a_full_disk_is_a_fatal_code(endpoint: Endpoint, destination: Storage) -> None:
    """With the process's file size limited (RLIMIT_FSIZE), a chunk past the limit is 507 disk_full
    and is not recorded; the chunks below it are."""
    data = os.urandom(2 * MIB)
    entry = entry_for(data)
    await endpoint.open("f.bin", entry)
    resource.prlimit(destination.pid, resource.RLIMIT_FSIZE, (MIB, MIB))
    assert (await endpoint.put("f.bin", 0, piece(data, 0)))[0] == 201
    status, body = await endpoint.put("f.bin", 20, piece(data, 20))
    assert (status, body["error"]) == (507, "disk_full")
    assert (await endpoint.call("GET", "/f.bin?chunked"))[1]["committed"] == [[0, 1]]


async def test_in_order_chunks_with_a_bad_one_and_chunked_bodies_commit(
    endpoint: Endpoint, destination: Storage
) -> None:
    """Chunks sent in order with a bad one in between, and bodies sent with chunked transfer encoding
    (no Content-Length, read block by block, hashed after they arrived) are taken whole; the commit
    finds the file intact."""
    data = os.urandom(4 * CHUNK + 99)
    entry = entry_for(data)
    await endpoint.open("in-order.bin", entry)

    async def pieces(body: bytes) -> AsyncIterator[bytes]:
        for at in range(0, len(body), 5000):
            yield body[at : at + 5000]

    for index in range(5):
        if index == 2:
            bad = bytearray(piece(data, index))
            bad[0] ^= 1
            assert (await endpoint.put("in-order.bin", index, bytes(bad)))[1]["error"] == "bad_chunk"
        status, body = await endpoint.call(
            "PUT", f"/in-order.bin?chunk={index}", data=pieces(piece(data, index))
        )
        assert (status, body["written"]) == (201, True), body
    status, body = await endpoint.commit("in-order.bin")
    assert (status, body["chunk_writes"]) == (201, 5), body
    assert (destination.bucket / "in-order.bin").read_bytes() == data


def test_o_direct_chunk_writes_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPNODE_UPLOAD_O_DIRECT=0 makes every chunk write go through the page cache."""
    target = tmp_path / "data"
    target.write_bytes(b"")
    monkeypatch.setenv(DIRECT_ENV, "0")
    assert open_direct(target) == -1


async def test_an_entry_of_the_older_form_commits_by_the_whole_file_hash(
    endpoint: Endpoint, destination: Storage
) -> None:
    """An entry without `chunk_root` (an older relay's) is still taken, and its commit hashes the
    whole file against the entry's SHA-256: an entry whose chunks contradict that SHA-256 is
    refused `manifest_mismatch` and nothing is installed."""
    data = os.urandom(3 * CHUNK + 5)
    older = entry_for(data, older=True)
    assert "chunk_root" not in older.model_dump(exclude_none=True)
    await endpoint.call("POST", "/old.bin?chunked", json=older.model_dump(exclude_none=True))
    for index in range(4):
        assert (await endpoint.put("old.bin", index, piece(data, index)))[0] == 201
    assert (await endpoint.commit("old.bin", {"X-Content-SHA256": older.sha256}))[0] == 201
    assert (destination.bucket / "old.bin").read_bytes() == data
    lying = older.model_copy(update={"sha256": hashlib.sha256(b"another file").hexdigest()})
    await endpoint.call("POST", "/lying.bin?chunked", json=lying.model_dump(exclude_none=True))
    for index in range(4):
        assert (await endpoint.put("lying.bin", index, piece(data, index)))[0] == 201
    status, body = await endpoint.commit("lying.bin")
    assert (status, body["error"]) == (422, "manifest_mismatch")
    assert not (destination.bucket / "lying.bin").exists()


async def test_a_commit_naming_another_entry_is_refused(endpoint: Endpoint, destination: Storage) -> None:
    """A commit whose `X-Chunk-Root` or `X-Content-SHA256` is not the open entry's (the upload was
    opened again for another version of the file) is 409 `entry_mismatch` and installs nothing;
    naming the right ones, it commits."""
    data = os.urandom(2 * CHUNK)
    entry = entry_for(data)
    await endpoint.open("f.bin", entry)
    for index in range(2):
        await endpoint.put("f.bin", index, piece(data, index))
    other = entry_for(os.urandom(2 * CHUNK))
    for headers in ({"X-Chunk-Root": other.root()}, {"X-Content-SHA256": other.sha256}):
        status, body = await endpoint.commit("f.bin", headers)
        assert (status, body["error"]) == (409, "entry_mismatch")
    assert not (destination.bucket / "f.bin").exists()
    headers = {"X-Chunk-Root": entry.root(), "X-Content-SHA256": entry.sha256}
    assert (await endpoint.commit("f.bin", headers))[0] == 201
    assert (destination.bucket / "f.bin").read_bytes() == data


async def test_an_entry_whose_root_is_not_its_chunk_list_is_refused(
    endpoint: Endpoint, destination: Storage
) -> None:
    """An entry whose chunk list was reordered, cut or given a chunk twice after its root was taken
    is refused when opened (400) and opens nothing."""
    data = os.urandom(3 * CHUNK)
    entry = entry_for(data).model_dump()
    chunks = entry["chunks"]
    for changed in ([chunks[1], chunks[0], chunks[2]], [chunks[0], chunks[0], chunks[2]]):
        status, body = await endpoint.call("POST", "/f.bin?chunked", json={**entry, "chunks": changed})
        assert (status, body["error"]) == (400, "invalid_request"), body
        assert "chunk_root" in body["message"]
    cut = {**entry, "chunks": chunks[:2], "size_bytes": 2 * CHUNK}
    assert (await endpoint.call("POST", "/f.bin?chunked", json=cut))[0] == 400
    assert (await endpoint.call("GET", "/f.bin?chunked"))[0] == 404
    assert destination.files() == []
