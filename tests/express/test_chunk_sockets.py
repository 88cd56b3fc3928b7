"""Chunk bodies received on the storage endpoint's own sockets (`connectors.storage_sockets`), against
a real `cpnode-storage` process, with requests written byte by byte as a client would: a bad chunk,
a body cut off, a body longer than the chunk, a wrong credential and a sender that stops, and the
requests of one connection handed to aiohttp after a plain chunk write."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.manifest import MAX_CHUNK_BYTES
from tests.express.test_chunk_protocol import CHUNK, entry_for, piece
from tests.support.express import BUCKET, Storage

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(name="storage")
def fixture_storage(tmp_path: Path) -> Iterator[Storage]:
    """A storage process whose chunk bodies may send nothing for one second."""
    storage = Storage(tmp_path / "destination", "destination", ("--body-timeout", "1"))
    storage.start()
    yield storage
    storage.stop()


@asynccontextmanager
async def connected(storage: Storage) -> AsyncIterator[Connection]:
    """A plain connection to the storage process."""
    reader, writer = await asyncio.open_connection("127.0.0.1", storage.port)
    try:
        yield reader, writer
    finally:
        writer.close()


def head(method: str, target: str, headers: dict[str, str]) -> bytes:
    """A request head for bucket `state`."""
    lines = [f"{method} /storage/v1/{BUCKET}{target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    """One answer: status, headers (lower-case names) and its JSON body (None if empty)."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = raw.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


async def put(connection: Connection, token: str, index: int, body: bytes, length: int = -1) -> None:
    """Send a plain chunk write (Content-Length `length`, else the body's)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Length": str(len(body) if length < 0 else length)}
    connection[1].write(head("PUT", f"/f.bin?chunk={index}", headers) + body)
    await connection[1].drain()


async def opened(storage: Storage, data: bytes) -> None:
    """Open the chunked upload of f.bin for `data`."""
    async with aiohttp.ClientSession() as session:
        url = f"{storage.url}/storage/v1/{BUCKET}/f.bin?chunked"
        headers = {"Authorization": f"Bearer {storage.token}"}
        async with session.post(url, json=entry_for(data).model_dump(), headers=headers) as response:
            assert response.status == 200, await response.text()


async def committed(connection: Connection, token: str) -> list[list[int]]:
    """The committed chunk ranges, asked on `connection` (a request aiohttp answers)."""
    connection[1].write(head("GET", "/f.bin?chunked", {"Authorization": f"Bearer {token}"}))
    status, _, body = await answer(connection[0])
    assert status == 200, body
    ranges: list[list[int]] = body["committed"]
    return ranges


async def test_a_bad_chunk_is_refused_and_the_connection_serves_on(storage: Storage) -> None:
    """A chunk that does not match is 422 `bad_chunk` and recorded nowhere; the same connection then
    takes the good chunk (201), the same again (200, not written) and a request aiohttp answers."""
    data = os.urandom(3 * CHUNK)
    await opened(storage, data)
    async with connected(storage) as connection:
        bad = bytearray(piece(data, 1))
        bad[-1] ^= 1
        await put(connection, storage.token, 1, bytes(bad))
        status, _, body = await answer(connection[0])
        assert (status, body["error"]) == (422, "bad_chunk")
        await put(connection, storage.token, 1, piece(data, 1))
        assert (await answer(connection[0]))[::2] == (201, {"chunk": 1, "written": True})
        await put(connection, storage.token, 1, piece(data, 1))
        assert (await answer(connection[0]))[::2] == (200, {"chunk": 1, "written": False})
        assert await committed(connection, storage.token) == [[1, 2]]


async def test_a_body_cut_off_leaves_nothing_and_the_chunk_is_taken_again(storage: Storage) -> None:
    """A sender that closes halfway through a body gets no answer and leaves no chunk recorded; the
    whole chunk sent again is written."""
    data = os.urandom(2 * CHUNK)
    await opened(storage, data)
    async with connected(storage) as connection:
        await put(connection, storage.token, 0, piece(data, 0)[: CHUNK // 2], length=CHUNK)
    async with connected(storage) as connection:
        assert await committed(connection, storage.token) == []
        await put(connection, storage.token, 0, piece(data, 0))
        assert (await answer(connection[0]))[0] == 201
        assert await committed(connection, storage.token) == [[0, 1]]


async def test_a_body_longer_than_the_chunk_is_refused_before_it_is_read(storage: Storage) -> None:
    """A Content-Length other than the chunk's is 400 `bad_length`; the body is read and dropped, so
    the connection serves on. One longer than any chunk may be is refused with the connection closed."""
    data = os.urandom(2 * CHUNK)
    await opened(storage, data)
    async with connected(storage) as connection:
        await put(connection, storage.token, 0, piece(data, 0) + b"extra")
        status, headers, body = await answer(connection[0])
        assert (status, body["error"]) == (400, "bad_length")
        assert headers.get("connection") != "close"
        await put(connection, storage.token, 0, piece(data, 0))
        assert (await answer(connection[0]))[0] == 201
    async with connected(storage) as connection:
        await put(connection, storage.token, 1, b"", length=MAX_CHUNK_BYTES + 1)
        status, headers, body = await answer(connection[0])
        assert (status, body["error"], headers["connection"]) == (400, "bad_length", "close")
        assert await connection[0].read() == b""
    async with connected(storage) as connection:
        assert await committed(connection, storage.token) == [[0, 1]]


async def test_a_wrong_credential_is_refused_and_writes_nothing(storage: Storage) -> None:
    """A wrong token and a forged grant are 401 on the plain path; nothing is recorded."""
    data = os.urandom(CHUNK)
    await opened(storage, data)
    async with connected(storage) as connection:
        for token in ("wrong-token-0123456789", "cpg1.forged.grant"):
            await put(connection, token, 0, piece(data, 0))
            status, _, body = await answer(connection[0])
            assert status == 401, body
        assert await committed(connection, storage.token) == []


async def test_a_sender_that_stops_is_timed_out_and_its_buffer_freed(storage: Storage) -> None:
    """A body that sends nothing for longer than --body-timeout (1 s) is answered 408 `timeout` and
    the connection closed; the chunk is not recorded and is taken whole afterwards."""
    data = os.urandom(CHUNK)
    await opened(storage, data)
    async with connected(storage) as connection:
        await put(connection, storage.token, 0, piece(data, 0)[:1000], length=CHUNK)
        status, headers, body = await answer(connection[0])
        assert (status, body["error"], headers["connection"]) == (408, "timeout", "close")
        assert await asyncio.wait_for(connection[0].read(), 30) == b""
    async with connected(storage) as connection:
        assert await committed(connection, storage.token) == []
        await put(connection, storage.token, 0, piece(data, 0))
        assert (await answer(connection[0]))[0] == 201


async def test_a_ranged_read_is_answered_as_aiohttp_answers_it(storage: Storage) -> None:
    """A plain ranged GET (answered on the listener's socket with sendfile) gets the bytes and the
    headers aiohttp gives the same read asked with a percent-escaped path (which aiohttp answers);
    a range past the end and a wrong token still get aiohttp's 416 and 401."""
    data = os.urandom(3 * CHUNK + 5)
    (storage.bucket / "r.bin").write_bytes(data)
    auth = {"Authorization": f"Bearer {storage.token}", "Range": f"bytes={CHUNK}-{2 * CHUNK + 9}"}
    async with connected(storage) as connection:
        answers = []
        for target in ("/r.bin", "/r%2Ebin", "/r.bin"):
            connection[1].write(head("GET", target, auth))
            raw = await asyncio.wait_for(connection[0].readuntil(b"\r\n\r\n"), 30)
            lines = raw.decode("latin-1").split("\r\n")
            fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await connection[0].readexactly(int(fields["content-length"]))
            answers.append((lines[0], {k: v for k, v in fields.items() if k not in ("date", "server")}, body))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == "HTTP/1.1 206 Partial Content"
    assert answers[0][2] == data[CHUNK : 2 * CHUNK + 10]
    for changed, status in (
        ({"Range": f"bytes={len(data)}-{len(data) + 9}"}, 416),
        ({"Authorization": "Bearer wrong-token-0123456789"}, 401),
    ):
        async with connected(storage) as connection:
            connection[1].write(head("GET", "/r.bin", {**auth, **changed}))
            line = await asyncio.wait_for(connection[0].readline(), 30)
            assert line.split()[1] == str(status).encode()


async def test_a_head_that_arrives_in_parts_is_served(storage: Storage) -> None:
    """A chunk write whose head arrives in two parts a moment apart is still answered (201)."""
    data = os.urandom(CHUNK)
    await opened(storage, data)
    request = head(
        "PUT", "/f.bin?chunk=0", {"Authorization": f"Bearer {storage.token}", "Content-Length": str(CHUNK)}
    )
    async with connected(storage) as connection:
        connection[1].write(request[:20])
        await connection[1].drain()
        await asyncio.sleep(0.3)
        connection[1].write(request[20:] + piece(data, 0))
        assert (await answer(connection[0]))[::2] == (201, {"chunk": 0, "written": True})
