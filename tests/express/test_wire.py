"""The relay's own HTTP/1.1 connections for chunk bodies (`connectors.express.wire`), against small
servers on loopback that behave as the edge cases need: a kept connection closed by the server, an
answer given before the request's body was read, chunked and malformed answers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from connectors.express.wire import ForwardCut, Wire, WireError, forward, wire_target

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


def _body_server(body: bytes, cut_after: int | None = None) -> Handler:
    """Answers every GET with 206 and `body` (only its first `cut_after` bytes, then closes)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            whole = answer(206, body)
            writer.write(whole if cut_after is None else whole[: len(whole) - len(body) + cut_after])
            await writer.drain()
            if cut_after is not None:
                return

    return handler


def _put_server(received: list[bytes], refuse: bytes | None = None) -> Handler:
    """Answers every PUT with 201 after reading its body into `received`; with `refuse`, answers
    that instead as soon as the head arrived, and closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            if refuse is not None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(refuse)
                await writer.drain()
                return
            try:
                _, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            received.append(body)
            writer.write(answer(201, b"{}"))
            await writer.drain()

    return handler


async def test_a_forwarded_body_goes_from_one_connection_to_the_other_paced() -> None:
    body = os.urandom((3 << 20) + 5)
    received: list[bytes] = []
    paced: list[int] = []

    async def pace(n: int) -> None:
        paced.append(n)

    async with (
        serving(_body_server(body)) as (source_port, sources),
        serving(_put_server(received)) as (
            destination_port,
            destinations,
        ),
    ):
        source, destination = Wire("127.0.0.1", source_port, 10), Wire("127.0.0.1", destination_port, 10)
        for _ in range(2):
            got = await forward(source, ("/a", {}), destination, ("/b", {}), len(body), pace, 1 << 20)
            assert got.destination is not None
            assert (got.source.status, got.source.filled, got.destination.status) == (206, len(body), 201)
        assert received == [body, body]
        assert sum(paced) == 2 * len(body)
        assert max(paced) <= 1 << 20
        assert (len(sources), len(destinations)) == (1, 1)  # both connections kept
        source.close()
        destination.close()


async def test_a_source_answer_of_another_length_is_returned_not_forwarded() -> None:
    received: list[bytes] = []
    async with (
        serving(_body_server(b"short")) as (source_port, _),
        serving(_put_server(received)) as (
            destination_port,
            destinations,
        ),
    ):
        source, destination = Wire("127.0.0.1", source_port, 10), Wire("127.0.0.1", destination_port, 10)
        got = await forward(source, ("/a", {}), destination, ("/b", {}), 1000)
        assert (got.source.status, got.source.body, got.destination) == (206, b"short", None)
        assert (received, destinations) == ([], [])
        source.close()


async def test_a_source_cut_mid_body_is_a_cut_at_the_source() -> None:
    body = os.urandom(2 << 20)
    received: list[bytes] = []
    async with (
        serving(_body_server(body, cut_after=1 << 20)) as (source_port, _),
        serving(_put_server(received)) as (destination_port, _),
    ):
        source, destination = Wire("127.0.0.1", source_port, 10), Wire("127.0.0.1", destination_port, 10)
        with pytest.raises(ForwardCut) as cut:
            await forward(source, ("/a", {}), destination, ("/b", {}), len(body))
        assert cut.value.at_source
        assert received == []  # the destination saw a body cut short: nothing complete arrived
        source.close()
        destination.close()


async def test_a_refusal_before_the_forwarded_body_was_taken_is_the_answer() -> None:
    body = os.urandom(32 << 20)
    refusal = answer(503, b'{"error": "busy"}', close=True)
    async with (
        serving(_body_server(body)) as (source_port, sources),
        serving(_put_server([], refusal)) as (
            destination_port,
            _,
        ),
    ):
        source, destination = Wire("127.0.0.1", source_port, 10), Wire("127.0.0.1", destination_port, 10)
        got = await forward(source, ("/a", {}), destination, ("/b", {}), len(body))
        assert got.destination is not None
        assert (got.destination.status, got.destination.body) == (503, b'{"error": "busy"}')
        assert got.source.filled == 0  # the source's body was not taken whole: its connection is dropped
        await forward(source, ("/a", {}), destination, ("/b", {}), len(body))
        assert len(sources) == 2
        source.close()
