"""A loopback TCP proxy for chaos tests: the balancer in front of a node's replicas, and the cut in
front of PostgreSQL.

Each accepted connection goes to the next backend in turn; a backend that refuses the connection
is skipped (as a load balancer skips a dead replica), and when none accepts, the client's
connection is closed. `cut()` aborts every open connection on both sides at once, as a network
failure does, and `refuse(seconds)` closes new connections on arrival for a while (the database
unreachable). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

CONNECT_TIMEOUT_S = 2.0
CHUNK_BYTES = 65_536


@dataclass
class ProxyCounts:
    """What a proxy did: connections accepted, forwarded, refused (no backend or refusing), cut."""

    accepted: int = 0
    forwarded: int = 0
    refused: int = 0
    cut: int = 0


class TcpProxy:
    """Round-robin TCP forwarding from 127.0.0.1:PORT to backends, with faults on demand."""

    def __init__(self, backends: Sequence[tuple[str, int]] = ()) -> None:
        self.backends = list(backends)
        self.counts = ProxyCounts()
        self.port = 0
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._refuse_until = 0.0

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (`port`, or any free one); return the port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    @property
    def url_host(self) -> str:
        """`127.0.0.1:PORT` of the listening socket."""
        return f"127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Abort every open connection on both sides; return how many connections were cut."""
        writers, self._open = list(self._open), set()
        for writer in writers:
            writer.transport.abort()
        cut = len(writers) // 2
        self.counts.cut += cut
        return cut

    def refuse(self, seconds: float) -> None:
        """Close new connections on arrival for `seconds`."""
        self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)

    def allow(self) -> None:
        """Accept new connections again (ends `refuse`)."""
        self._refuse_until = 0.0

    async def close(self) -> None:
        """Stop listening and abort every open connection."""
        if self._server is not None:
            self._server.close()
            self.cut()
            await self._server.wait_closed()
            self._server = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the next backend that accepts one, trying each once."""
        if not self.backends:
            return None
        start = next(self._turn)
        for step in range(len(self.backends)):
            host, port = self.backends[(start + step) % len(self.backends)]
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    return await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                continue
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.accepted += 1
        upstream = None if time.monotonic() < self._refuse_until else await self._connect()
        if upstream is None:
            self.counts.refused += 1
            writer.transport.abort()
            return
        self.counts.forwarded += 1
        up_reader, up_writer = upstream
        pair = (writer, up_writer)
        self._open.update(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open.difference_update(pair)
            for side in pair:
                side.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until either side closes; then half-close the other side."""
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.transport.abort()
