"""Slow and numerous clients against a real node on loopback: half-sent headers and bodies are cut
off at their deadlines, the connection cap holds and frees, and accept errors under file-descriptor
exhaustion are logged a bounded number of times."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.logs import LoopErrorLog, RateLimiter
from node.service import NodeServer
from tests.support.nodes import NodeProcess, make_node_dir, running_node
from tests.support.polling import eventually

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _node_dir(tmp_path: Path, **http: float) -> Path:
    """A node folder whose [http] section carries the given settings."""
    config = make_node_dir(tmp_path, "alpha")
    lines = "".join(f"{key} = {value}\n" for key, value in http.items())
    config.write_text(config.read_text(encoding="utf-8").replace("[http]\n", "[http]\n" + lines, 1))
    return config


@pytest.fixture(name="guarded")
async def fixture_guarded(tmp_path: Path) -> AsyncIterator[NodeServer]:
    """A node with one-second header and body deadlines."""
    config = _node_dir(tmp_path, header_timeout_s=1, body_timeout_s=1, max_connections=2000)
    async with running_node(config) as server:
        yield server


def _address(server: NodeServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def _open(server: NodeServer, data: bytes) -> Conn:
    reader, writer = await asyncio.open_connection(*_address(server))
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def _until_closed(conn: Conn) -> bytes:
    """Everything the server sends until it closes the connection."""
    reader, _ = conn
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def _healthz(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
        return response.status


def _close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()


async def test_half_sent_headers_are_closed(guarded: NodeServer) -> None:
    """300 connections that never finish their request header are all closed after the header
    deadline (not before), and the node still answers /healthz."""
    partial = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
    started = time.monotonic()
    conns = [await _open(guarded, partial) for _ in range(300)]
    try:
        async with asyncio.timeout(20):
            answers = await asyncio.gather(*(_until_closed(c) for c in conns))
        elapsed = time.monotonic() - started
    finally:
        _close_all(conns)
    assert all(answer == b"" for answer in answers)
    assert elapsed >= 0.9
    assert await _healthz(guarded.url) == 200


async def test_half_sent_bodies_get_408(guarded: NodeServer) -> None:
    """Requests whose body stops arriving are answered 408 body_timeout and closed, on a signed
    federation route and on an /api/v1 route alike."""
    assert guarded.ctx is not None
    host = f"Host: {guarded.url.removeprefix('http://')}\r\n"
    admin = f"Authorization: Bearer {guarded.ctx.admin_token}\r\n"
    heads = [
        f"POST /fed/v1/login/challenge HTTP/1.1\r\n{host}Content-Length: 1000\r\n\r\n",
        f"POST /api/v1/consumers HTTP/1.1\r\n{host}{admin}Content-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n",
    ]
    conns = [await _open(guarded, head.encode() + b'{"id": "') for head in heads for _ in range(25)]
    try:
        async with asyncio.timeout(20):
            answers = await asyncio.gather(*(_until_closed(c) for c in conns))
    finally:
        _close_all(conns)
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b'"body_timeout"' in answer


async def test_connection_cap_holds_and_frees(tmp_path: Path) -> None:
    """With 20 connections held open, more are answered 503 and closed at once; when the held ones
    go, a normal client is served again."""
    config = _node_dir(tmp_path, header_timeout_s=60, max_connections=20)
    async with running_node(config) as server:
        assert server.site is not None
        held = [await _open(server, b"") for _ in range(20)]
        try:
            site = server.site
            await eventually(lambda: site.open_connections >= 20, 10, "20 connections held")
            extra = [await _open(server, b"") for _ in range(30)]
            async with asyncio.timeout(5):
                answers = await asyncio.gather(*(_until_closed(c) for c in extra))
            _close_all(extra)
            assert all(a.startswith(b"HTTP/1.1 503") and b"too_many_connections" in a for a in answers)
            assert server.site.refused >= 30
        finally:
            _close_all(held)
        async with asyncio.timeout(10):
            while True:
                try:
                    if await _healthz(server.url) == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)


def test_loop_errors_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """10,000 accept failures (EMFILE) within one interval log one line; the next interval's first
    line says how many were held back. Other errors are logged on their own."""
    clock = {"now": 1000.0}
    handler = LoopErrorLog(RateLimiter(10.0, lambda: clock["now"]))
    loop = asyncio.new_event_loop()
    emfile = OSError(24, "Too many open files")
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            for _ in range(10_000):
                handler(loop, {"message": "socket.accept() out of system resource", "exception": emfile})
            handler(loop, {"message": "other", "exception": ValueError("Invalid file descriptor: -1")})
            clock["now"] += 10.0
            handler(loop, {"message": "socket.accept() out of system resource", "exception": emfile})
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "9999 similar errors not logged" in lines[2]


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_emfile_storm_is_bounded_and_the_node_serves_after(tmp_path: Path, event_loop: str) -> None:
    """A real node process limited to 100 open files, flooded with connections until it has none
    left: over a 3-second window its log gets at most a couple of "Too many open files" lines, it
    warns that descriptors are nearly used up, and once the flood is gone it serves again. On the
    standard loop each failed accept is an error (rate-limited); uvloop accepts and closes such
    connections at once without a line, so there the flood shows as connections ended unanswered."""
    config = make_node_dir(tmp_path, "alpha")
    node = NodeProcess(config, env={"CPNODE_HTTP_EVENT_LOOP": event_loop})
    node.start()
    conns: list[Conn] = []
    try:
        assert node.proc is not None
        assert f"event loop {event_loop}" in node.log()
        resource.prlimit(node.proc.pid, resource.RLIMIT_NOFILE, (100, 100))
        host, port = node.url.removeprefix("http://").rsplit(":", 1)

        async def connect() -> None:
            try:
                conn = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            except (OSError, TimeoutError):
                return
            conn[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            conns.append(conn)

        await asyncio.gather(*(connect() for _ in range(300)))
        if event_loop == "asyncio":
            await eventually(lambda: "Too many open files" in node.log(), 20, "accept() failing with EMFILE")
        else:
            ended = await _ended_unanswered(conns)
            assert ended >= 100, f"only {ended} of {len(conns)} connections were closed unanswered"
        await eventually(
            lambda: "file descriptors nearly used up" in node.log(), 20, "the low-descriptor warning"
        )
        before = node.log().count("Too many open files")
        await asyncio.sleep(3)  # the observation window: how much the storm logs over time
        during = node.log().count("Too many open files") - before
        _close_all(conns)
        conns.clear()
        await eventually(lambda: _serves(node.url), 20, "the node serving again after the flood")
    finally:
        _close_all(conns)
        node.stop()
    assert during <= 2, node.log()[-3000:]
    assert len(node.log()) < 100_000


async def _serves(url: str) -> bool:
    """Whether the node at `url` answers /healthz with 200."""
    try:
        return await _healthz(url) == 200
    except (aiohttp.ClientError, OSError):
        return False


async def _ended_unanswered(conns: list[Conn]) -> int:
    """How many of `conns` the server closed without a byte of answer (each given 5 s to show it)."""

    async def ended(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), 5) == b""
        except (OSError, TimeoutError):
            return isinstance(reader.exception(), OSError)

    return sum(await asyncio.gather(*(ended(reader) for reader, _ in conns)))
