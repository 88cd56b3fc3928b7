"""A fault-injecting TCP proxy for tests, on 127.0.0.1, that also reads the HTTP requests it carries.

Faults, set at any time:
- `refuse()` / `accept()`: stop listening (new connections are refused) and start again on the
  same port; `refuse(cut=True)` also cuts the open connections;
- `cut_after(n)`: once n more bytes went from the server to the client, cut every open connection
  (a server dying mid-stream); with `then_refuse` it stops listening as well;
- `delay_s`: wait this long before forwarding each piece of data;
- `corrupt_request(nth, offset)`: flip one byte at `offset` of the body of the nth request (1-based,
  counted from now) whose method is PUT, once;
- `retarget(port)`: send new connections to another port (a restarted server).

Counters: `requests` (method and target of every request seen), `bytes_up`, `bytes_down`,
`connections`, `cuts` (how often `cut_after` fired) and `corrupted` (the target of the request
that had a byte flipped).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

_HEADERS_END = b"\r\n\r\n"
_MAX_HEADERS = 64 << 10


@dataclass
class _RequestReader:
    """Follows the requests of one connection's client→server bytes (Content-Length bodies)."""

    buffer: bytearray = field(default_factory=bytearray)
    body_left: int = 0
    body_seen: int = 0
    method: str = ""
    target: str = ""


class FaultProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target_port, with faults."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.delay_s = 0.0
        self.requests: list[tuple[str, str]] = []
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.corrupted: str | None = None
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._cut_left: int | None = None
        self._cut_then_refuse = False
        self._corrupt: tuple[int, int] | None = None
        self._puts_seen = 0

    @property
    def open_connections(self) -> int:
        """Connections being carried now (each has a client side and a server side)."""
        return len(self._open) // 2

    @property
    def url(self) -> str:
        """http://127.0.0.1:port of the proxy."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Listen on a free port (the same one after `refuse`/`accept`); return the URL."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def refuse(self, cut: bool = False) -> None:
        """Stop listening, so connections are refused; with `cut`, also cut the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if cut:
            self.cut_now()

    async def accept(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    def retarget(self, port: int) -> None:
        """Send new connections to `port`."""
        self.target_port = port

    def cut_after(self, nbytes: int, then_refuse: bool = False) -> None:
        """Cut every connection once `nbytes` more went from server to client."""
        self._cut_left = nbytes
        self._cut_then_refuse = then_refuse

    def corrupt_request(self, nth: int, offset: int) -> None:
        """Flip byte `offset` of the body of the nth PUT request from now on."""
        self._corrupt = (self._puts_seen + nth, offset)

    def cut_now(self) -> None:
        """Close every open connection, both sides."""
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def count(self, method: str, contains: str = "") -> int:
        """How many requests with `method` (and `contains` in the target) went through."""
        return sum(1 for m, target in self.requests if m == method and contains in target)

    async def close(self) -> None:
        """Stop listening and cut everything."""
        await self.refuse(cut=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        requests = _RequestReader()
        await asyncio.gather(
            self._pipe(reader, up_writer, requests),
            self._pipe(up_reader, writer, None),
            return_exceptions=True,
        )
        for side in (writer, up_writer):
            self._open.discard(side)
            side.transport.abort()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, requests: _RequestReader | None
    ) -> None:
        try:
            while received := await source.read(64 << 10):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                data = bytearray(received)
                if requests is not None:
                    data = self._observe(requests, data)
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                    if self._cut_left is not None:
                        if len(data) >= self._cut_left:
                            sink.write(bytes(data[: self._cut_left]))
                            self._cut_left = None
                            with contextlib.suppress(ConnectionError):
                                await sink.drain()
                            if self._cut_then_refuse:
                                await self.refuse()
                            self.cut_now()
                            self.cuts += 1
                            return
                        self._cut_left -= len(data)
                sink.write(bytes(data))
                await sink.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.close()

    def _observe(self, state: _RequestReader, data: bytearray) -> bytearray:
        """Follow request boundaries in client→server bytes; flip the chosen byte if it passes."""
        at = 0
        while at < len(data):
            if state.body_left:
                take = min(state.body_left, len(data) - at)
                self._maybe_corrupt(state, data, at, take)
                state.body_left -= take
                state.body_seen += take
                at += take
                continue
            state.buffer += data[at:]
            end = state.buffer.find(_HEADERS_END)
            if end < 0:
                if len(state.buffer) > _MAX_HEADERS:
                    state.buffer.clear()
                return data
            head = bytes(state.buffer[:end]).decode("latin-1").split("\r\n")
            consumed = len(data) - at - (len(state.buffer) - end - len(_HEADERS_END))
            at += consumed
            state.buffer.clear()
            parts = head[0].split(" ")
            state.method, state.target = parts[0], parts[1] if len(parts) > 1 else ""
            self.requests.append((state.method, state.target))
            if state.method == "PUT":
                self._puts_seen += 1
            lengths = [
                line.split(":", 1)[1] for line in head[1:] if line.lower().startswith("content-length:")
            ]
            state.body_left = int(lengths[0]) if lengths else 0
            state.body_seen = 0
        return data

    def _maybe_corrupt(self, state: _RequestReader, data: bytearray, at: int, take: int) -> None:
        if self._corrupt is None or state.method != "PUT" or self._puts_seen != self._corrupt[0]:
            return
        offset = self._corrupt[1]
        if state.body_seen <= offset < state.body_seen + take:
            data[at + offset - state.body_seen] ^= 0xFF
            self._corrupt = None
            self.corrupted = state.target
