"""The relay's data path on plain sockets: HTTP/1.1 keep-alive requests whose bodies go straight
between a chunk buffer and the socket (received into the buffer, `sendall` from it). The framing
is shared with the storage endpoint's own listener (`connectors.storage_wire`); a body of 256 KiB
or more is received by a thread blocked in one `recv(MSG_WAITALL)` rather than block by block on
the event loop.

A chunk read or write through a general HTTP client costs, besides the copies the kernel makes,
a fresh bytes object per read, a copy into the buffer and a copy of every partly sent write; on a
relay moving hundreds of MiB that is most of its CPU. This client makes one request at a time per
connection, reuses idle connections per endpoint, and understands just what the storage protocol
answers: a status line, headers, and a body with `Content-Length` (or chunked, for small error
bodies). Every socket operation has its own timeout (`timeout_s`), as a read timeout would.
Failures raise `OSError`/`TimeoutError` (connection trouble) or `WireError` (an answer that is not
HTTP as expected); `connectors.express.endpoints` turns them into transfer errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.storage_wire import (
    HEADERS_END,
    MAX_HEAD,
    SpliceCut,
    WireError,
    format_head,
    open_pipe,
    parse_head,
    receive_into,
    splice_between,
)

__all__ = ["Answer", "ForwardCut", "Forwarded", "Wire", "WireError", "forward", "wire_target"]

_MAX_SMALL_BODY = 10 << 20
_RECV = 64 << 10  # a read for an answer's headers (a body's start that comes with them is kept)
_THREAD_BODY = 256 << 10  # bodies at least this long are received by a thread (`receive_into`)
Pace = Callable[[int], Awaitable[None]]


@dataclass
class Answer:
    """A response: status, headers (lower-case names), and its body when it was not read into a buffer."""

    status: int
    headers: dict[str, str]
    body: bytes
    filled: int = 0  # bytes of the body read into the caller's buffer


def wire_target(url: str) -> tuple[str, int] | None:
    """(host, port) of a plain-HTTP URL this client can talk to, or None (https: not handled here)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    return parts.hostname, parts.port or 80


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.spare = bytearray()  # bytes received past the end of the last answer (none, normally)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Wire:
    """Requests to one HTTP endpoint (`host`, `port`) over reused connections."""

    def __init__(self, host: str, port: int, timeout_s: float, max_idle: int = 16) -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()

    async def _connect(self) -> _Connection:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._loop.sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: memoryview | None = None,
        pace: Pace | None = None,
        slice_bytes: int = 1 << 20,
        into: memoryview | None = None,
    ) -> Answer:
        """Send one request (`body` in slices of `slice_bytes`, each after `pace(n)`); the answer's body
        is read into `into` when the status is 200 or 206 and `into` is given, else returned."""
        connection, reused = await self._take()
        try:
            answer, keep = await self._exchange(
                connection, method, target, headers, body, pace, slice_bytes, into
            )
        except (OSError, TimeoutError, WireError) as exc:
            connection.close()
            # A kept connection the server closed meanwhile fails before any answer: once more on a new one.
            if reused and isinstance(exc, _ClosedBeforeAnswer):
                return await self.request(method, target, headers, body, pace, slice_bytes, into)
            raise
        except BaseException:
            connection.close()
            raise
        self._give(connection, keep)
        return answer

    async def _take(self) -> tuple[_Connection, bool]:
        """An idle connection (True: reused) or a new one (False)."""
        if self._idle:
            return self._idle.pop(), True
        return await self._connect(), False

    def _give(self, connection: _Connection, keep: bool) -> None:
        """Keep `connection` for the next request if it can carry one, else close it."""
        if keep and len(self._idle) < self.max_idle and not connection.spare:
            self._idle.append(connection)
        else:
            connection.close()

    def _head_of(self, method: str, target: str, headers: dict[str, str], length: int) -> bytes:
        fields = {"Host": f"{self.host}:{self.port}", **headers, "Content-Length": str(length)}
        return format_head(f"{method} {target} HTTP/1.1", fields)

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        target: str,
        headers: dict[str, str],
        body: memoryview | None,
        pace: Pace | None,
        slice_bytes: int,
        into: memoryview | None,
    ) -> tuple[Answer, bool]:
        head = self._head_of(method, target, headers, 0 if body is None else len(body))
        await self._send(connection, memoryview(head))
        cut: OSError | None = None
        try:
            if body is not None:
                for start in range(0, len(body), slice_bytes):
                    piece = body[start : start + slice_bytes]
                    if pace is not None:
                        await pace(len(piece))
                    await self._send(connection, piece)
        except OSError as exc:  # the server may have answered (a refusal) and closed before the body ended
            cut = exc
        try:
            status, answer_headers = await self._read_head(connection)
        except (OSError, WireError) as exc:
            if cut is not None and not isinstance(exc, _ClosedBeforeAnswer):
                raise cut from None
            raise
        keep = cut is None and answer_headers.get("connection", "").lower() != "close"
        return await self._body(connection, method, status, answer_headers, keep, into)

    async def _body(
        self,
        connection: _Connection,
        method: str,
        status: int,
        answer_headers: dict[str, str],
        keep: bool,
        into: memoryview | None,
    ) -> tuple[Answer, bool]:
        """The answer with its body: read into `into` (200 or 206) or returned (a short one)."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Answer(status, answer_headers, b""), keep
        if answer_headers.get("transfer-encoding", "").lower() == "chunked":
            return Answer(status, answer_headers, await self._read_chunked(connection)), keep
        raw_length = answer_headers.get("content-length")
        if raw_length is None or not raw_length.isdigit():
            raise WireError("an answer without Content-Length")
        length = int(raw_length)
        if into is not None and status in (200, 206):
            if length > len(into):
                raise WireError(f"an answer of {length} bytes for a buffer of {len(into)}")
            await self._read_exact(connection, into[:length])
            return Answer(status, answer_headers, b"", filled=length), keep
        if length > _MAX_SMALL_BODY:
            raise WireError(f"an answer of {length} bytes where a short one was expected")
        data = bytearray(length)
        await self._read_exact(connection, memoryview(data))
        return Answer(status, answer_headers, bytes(data)), keep

    async def _send(self, connection: _Connection, data: memoryview) -> None:
        async with asyncio.timeout(self.timeout_s):
            await self._loop.sock_sendall(connection.sock, data)

    async def _recv_into(self, connection: _Connection, view: memoryview) -> int:
        if connection.spare:
            got = min(len(view), len(connection.spare))
            view[:got] = connection.spare[:got]
            del connection.spare[:got]
            return got
        async with asyncio.timeout(self.timeout_s):
            return await self._loop.sock_recv_into(connection.sock, view)

    async def _read_exact(self, connection: _Connection, view: memoryview) -> None:
        filled = 0
        while filled < len(view):
            if len(view) - filled >= _THREAD_BODY and not connection.spare:
                got = await receive_into(connection.sock, view[filled:], self.timeout_s)
                if filled + got < len(view):
                    raise ConnectionResetError(
                        f"the server closed the connection after {filled + got} of {len(view)} bytes"
                    )
                return
            got = await self._recv_into(connection, view[filled:])
            if not got:
                raise ConnectionResetError(
                    f"the server closed the connection after {filled} of {len(view)} bytes"
                )
            filled += got

    async def _read_head(self, connection: _Connection) -> tuple[int, dict[str, str]]:
        buffer = bytearray()
        block = bytearray(_RECV)
        while (end := buffer.find(HEADERS_END)) < 0:
            if len(buffer) > MAX_HEAD:
                raise WireError("an answer whose headers do not end")
            got = await self._recv_into(connection, memoryview(block))
            if not got:
                if not buffer:
                    raise _ClosedBeforeAnswer("the server closed the connection before answering")
                raise ConnectionResetError("the server closed the connection within an answer's headers")
            buffer += block[:got]
        connection.spare = buffer[end + len(HEADERS_END) :]
        head = parse_head(bytes(buffer[:end]))
        parts = head.start
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"not an HTTP/1.1 status line: {' '.join(parts)[:80]!r}")
        return int(parts[1]), head.headers

    async def _read_line(self, connection: _Connection) -> bytes:
        line = bytearray()
        one = bytearray(1)
        while not line.endswith(b"\r\n"):
            if len(line) > 4096:
                raise WireError("a chunk size line that does not end")
            if not await self._recv_into(connection, memoryview(one)):
                raise ConnectionResetError("the server closed the connection within a chunked body")
            line += one
        return bytes(line[:-2])

    async def _read_chunked(self, connection: _Connection) -> bytes:
        body = bytearray()
        while True:
            size_text = (await self._read_line(connection)).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise WireError(f"a bad chunk size {size_text[:20]!r}") from None
            if len(body) + size > _MAX_SMALL_BODY:
                raise WireError("a chunked answer longer than expected")
            if size == 0:
                while await self._read_line(connection):
                    pass  # trailers
                return bytes(body)
            piece = bytearray(size + 2)
            await self._read_exact(connection, memoryview(piece))
            body += piece[:size]


class _ClosedBeforeAnswer(ConnectionResetError):
    """A kept connection the server had closed: nothing of the answer arrived."""


class ForwardCut(Exception):
    """`forward` failed on one side (`at_source`: the source's connection, else the destination's)
    with `cause` (OSError, TimeoutError or WireError)."""

    def __init__(self, at_source: bool, cause: Exception) -> None:
        super().__init__(str(cause))
        self.at_source, self.cause = at_source, cause


@dataclass
class Forwarded:
    """What `forward` got: the source's answer (with its body when that was not forwarded) and the
    destination's answer (None when the source's body was not forwarded)."""

    source: Answer
    destination: Answer | None


async def forward(
    source: Wire,
    get: tuple[str, dict[str, str]],
    destination: Wire,
    put: tuple[str, dict[str, str]],
    length: int,
    pace: Pace | None = None,
    slice_bytes: int = 1 << 20,
) -> Forwarded:
    """GET `get` (target, headers) from `source`; if it answers 200 or 206 with a body of exactly
    `length` bytes, PUT `put` (target, headers) on `destination` with that body, moved from one
    socket to the other by `splice` in slices of `slice_bytes`, each after `pace(n)`, and read its
    answer. Any other answer of the source is returned with its body and nothing is sent.
    ForwardCut says which side failed; a connection a failure leaves in doubt is closed."""
    for attempt in (1, 2):
        connection, reused = await _taken(source, True)
        try:
            await source._send(connection, memoryview(source._head_of("GET", *get, 0)))
            status, headers = await source._read_head(connection)
            break
        except (OSError, TimeoutError, WireError) as exc:
            connection.close()
            # A kept connection the server closed meanwhile fails before any answer: once more on a new one.
            if reused and attempt == 1 and isinstance(exc, _ClosedBeforeAnswer):
                continue
            raise ForwardCut(True, exc) from None
        except BaseException:
            connection.close()
            raise
    keep = headers.get("connection", "").lower() != "close"
    if (
        status not in (200, 206)
        or headers.get("content-length") != str(length)
        or len(connection.spare) > length
    ):
        try:
            answer, keep = await source._body(connection, "GET", status, headers, keep, None)
        except (OSError, TimeoutError, WireError) as exc:
            connection.close()
            raise ForwardCut(True, exc) from None
        except BaseException:
            connection.close()
            raise
        source._give(connection, keep)
        return Forwarded(answer, None)
    try:
        answer, whole = await _put_spliced(connection, destination, put, length, pace, slice_bytes)
    except BaseException:
        connection.close()
        raise
    source._give(connection, keep and whole)
    return Forwarded(Answer(status, headers, b"", filled=length if whole else 0), answer)


async def _taken(wire: Wire, at_source: bool) -> tuple[_Connection, bool]:
    try:
        return await wire._take()
    except (OSError, TimeoutError) as exc:
        raise ForwardCut(at_source, exc) from None


async def _put_spliced(
    body_from: _Connection,
    destination: Wire,
    put: tuple[str, dict[str, str]],
    length: int,
    pace: Pace | None,
    slice_bytes: int,
) -> tuple[Answer, bool]:
    """PUT the `length`-byte body waiting on `body_from` (its start, if any, in `spare`) to
    `destination`: its answer, and whether the whole body was taken from `body_from` (not when the
    destination answered, and closed, before taking all of it)."""
    connection, _ = await _taken(destination, False)
    pipe = open_pipe()
    try:
        cut: Exception | None = None
        try:
            await destination._send(connection, memoryview(destination._head_of("PUT", *put, length)))
            moved = len(body_from.spare)
            if moved:  # the body's start, received with the source's head
                if pace is not None:
                    await pace(moved)
                await destination._send(connection, memoryview(body_from.spare))
                body_from.spare = bytearray()
            while moved < length:
                count = min(slice_bytes, length - moved)
                if pace is not None:
                    await pace(count)
                await splice_between(body_from.sock, connection.sock, pipe, count, destination.timeout_s)
                moved += count
        except SpliceCut as exc:
            if exc.taking:
                raise ForwardCut(True, exc.cause) from None
            cut = exc.cause  # the destination may have answered (a refusal) and closed
        except (OSError, TimeoutError) as exc:
            cut = exc
        try:
            status, headers = await destination._read_head(connection)
            keep = cut is None and headers.get("connection", "").lower() != "close"
            answer, keep = await destination._body(connection, "PUT", status, headers, keep, None)
        except (OSError, TimeoutError, WireError) as exc:
            closed_first = cut is not None and not isinstance(exc, _ClosedBeforeAnswer)
            raise ForwardCut(False, cut if closed_first and cut is not None else exc) from None
    except BaseException:
        connection.close()
        raise
    finally:
        for end in pipe:
            os.close(end)
    destination._give(connection, keep)
    return answer, cut is None
