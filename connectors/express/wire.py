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
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.storage_wire import HEADERS_END, MAX_HEAD, WireError, format_head, parse_head, receive_into

__all__ = ["Answer", "Wire", "WireError", "wire_target"]

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
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else await self._connect()
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
        if keep and len(self._idle) < self.max_idle and not connection.spare:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

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
        fields = {"Host": f"{self.host}:{self.port}", **headers}
        fields["Content-Length"] = str(0 if body is None else len(body))
        head = format_head(f"{method} {target} HTTP/1.1", fields)
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
