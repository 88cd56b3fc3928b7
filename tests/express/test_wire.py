"""The relay's own HTTP/1.1 connections for chunk bodies (`connectors.express.wire`), against small
servers on loopback that behave as the edge cases need: a kept connection closed by the server, an
answer given before the request's body was read, chunked and malformed answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from connectors.express.wire import Wire, WireError, wire_target

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """A server on 127.0.0.1 running `handler` per connection: (port, connections so far)."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """One request's first line and its body (Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")), 0)
    return lines[0], await reader.readexactly(length)


def answer(status: int, body: bytes, close: bool = False) -> bytes:
    """An HTTP/1.1 answer with Content-Length."""
    extra = "Connection: close\r\n" if close else ""
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_only_plain_http_is_handled_here() -> None:
    assert wire_target("http://127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert wire_target("http://[::1]:81/x") == ("::1", 81)
    assert wire_target("https://127.0.0.1:8443") is None


async def test_bodies_go_into_the_buffer_over_one_kept_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                first, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(answer(206, b"x" * 1000) if first.startswith("GET") else answer(201, body[:5]))
            await writer.drain()

    async with serving(handler) as (port, connections):
        wire = Wire("127.0.0.1", port, timeout_s=10)
        buffer = bytearray(1000)
        got = await wire.request("GET", "/a", {}, into=memoryview(buffer))
        assert (got.status, got.filled, bytes(buffer)) == (206, 1000, b"x" * 1000)
        paced: list[int] = []

        async def pace(n: int) -> None:
            paced.append(n)

        sent = await wire.request("PUT", "/a", {}, memoryview(b"hello world" * 100), pace, slice_bytes=256)
        assert (sent.status, sent.body) == (201, b"hello")
        assert paced == [256, 256, 256, 256, 76]
        assert len(connections) == 1  # kept alive
        wire.close()


async def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(200, b"ok"))
        await writer.drain()  # then closes: the client kept a connection that is gone

    async with serving(handler) as (port, connections):
        wire = Wire("127.0.0.1", port, timeout_s=10)
        assert (await wire.request("GET", "/a", {})).body == b"ok"
        await asyncio.sleep(0.05)
        assert (await wire.request("GET", "/a", {})).body == b"ok"
        assert len(connections) == 2
        wire.close()


async def test_a_refusal_sent_before_the_body_was_read_is_the_answer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(404, b'{"error": "no_upload"}', close=True))
        await writer.drain()

    async with serving(handler) as (port, _connections):
        wire = Wire("127.0.0.1", port, timeout_s=10)
        got = await wire.request("PUT", "/a?chunk=0", {}, memoryview(bytes(32 << 20)))
        assert (got.status, got.body) == (404, b'{"error": "no_upload"}')
        wire.close()


async def test_chunked_and_malformed_answers() -> None:
    replies = [
        b"HTTP/1.1 409 X\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"SSH-2.0-nothing\r\n\r\n",
        b"HTTP/1.1 200 X\r\n\r\n",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(replies.pop(0))
        await writer.drain()

    async with serving(handler) as (port, _connections):
        wire = Wire("127.0.0.1", port, timeout_s=10)
        got = await wire.request("GET", "/a", {})
        assert (got.status, got.body) == (409, b"hello world")
        with pytest.raises(WireError, match="status line"):
            await wire.request("GET", "/a", {})
        with pytest.raises(WireError, match="Content-Length"):
            await wire.request("GET", "/a", {})
        wire.close()


async def test_a_server_that_does_not_answer_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)
        await asyncio.sleep(30)

    async with serving(handler) as (port, _connections):
        wire = Wire("127.0.0.1", port, timeout_s=0.5)
        with pytest.raises(TimeoutError):
            await wire.request("GET", "/a", {})
        wire.close()
