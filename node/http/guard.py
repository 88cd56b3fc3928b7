"""What keeps slow or numerous clients from exhausting the node: a cap on open connections, and
deadlines for a request's header and body.

- Header: aiohttp's keep-alive timer closes a connection that is waiting for a request and has not
  delivered a complete header within `keepalive_timeout` of opening or of its previous response;
  the node sets that to `http.header_timeout_s` (so it is also how long an idle kept-alive
  connection stays open, as in uvicorn and hypercorn).
- Body: `body_deadline` fails a request's body stream with `BodyTimeoutError` (408) when the body
  has not fully arrived `http.body_timeout_s` after the request began; every body reader sees it.
- Connections: `GuardedSite` serves like aiohttp's TCPSite but answers a connection beyond
  `http.max_connections` with a 503 and closes it at once, so held connections cannot use up the
  process's file descriptors; `connection_cap` keeps the cap within them (RLIMIT_NOFILE).
- Descriptors: the site also watches how many files the process has open (`fd_headroom`) and warns
  once a minute at most while fewer than `FD_LOW` are left. With none left, new connections fail:
  the standard loop logs each failed accept (rate-limited by `node.logs.LoopErrorLog`), while
  uvloop (libuv) accepts and closes them at once without a word, so this warning is what an
  operator sees under either loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web

from connectors.stopping import stop_tasks
from node.errors import CodedError
from node.logs import RateLimiter

log = logging.getLogger("cpnode.http")
FD_RESERVE = 128
"""File descriptors kept for the node's own use (database, peers, plugins, logs) beside connections."""
FD_LOW = FD_RESERVE // 2
"""Fewer descriptors left than this: the site warns (see the module docstring)."""
FD_CHECK_S = 2.0
"""How often the site counts the process's open descriptors."""
FD_WARN_INTERVAL_S = 60.0
"""The least time between two low-descriptor warnings."""
_REFUSED_BODY = b'{"error":"too_many_connections","message":"the node is at its connection cap; retry later"}'
REFUSED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)
"""What a connection over the cap is told before it is closed."""


class BodyTimeoutError(CodedError, TimeoutError, code="body_timeout"):
    """The request body did not arrive within the body timeout (408; the connection is closed)."""


def body_deadline(request: web.Request, timeout_s: float) -> asyncio.TimerHandle | None:
    """Arm the body deadline of `request` (None when it has no body left to read); cancel it when done."""
    if not request.can_read_body:
        return None
    payload = request.content

    def expire() -> None:
        if not payload.is_eof():
            payload.set_exception(BodyTimeoutError(f"request body not received within {timeout_s:g} s"))

    return asyncio.get_running_loop().call_later(timeout_s, expire)


def connection_cap(wanted: int) -> int:
    """`wanted`, or less when the process may not open that many files beside `FD_RESERVE` of its
    own. The soft RLIMIT_NOFILE is first raised toward the hard limit as far as needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    cap = max(1, soft - FD_RESERVE)
    log.warning(
        "http.max_connections is %d but the process may open only %d files; serving at most %d connections",
        wanted,
        soft,
        cap,
    )
    return cap


def fd_headroom() -> tuple[int, int] | None:
    """(open descriptors, the soft RLIMIT_NOFILE) of this process; None where they cannot be
    counted (no /proc/self/fd, or no limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError as exc:  # listing takes a descriptor too: none left means all are in use
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return None
        used = soft
    return used, soft


class _Refused(asyncio.Protocol):
    """A connection over the cap: told 503 and closed before anything is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSED_RESPONSE)
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, with its end reported to the site's count."""

    def __init__(self, inner: asyncio.Protocol, on_closed: Callable[[], None]) -> None:
        self._inner = inner
        self._on_closed: Callable[[], None] | None = on_closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._on_closed is not None:
            self._on_closed()
            self._on_closed = None
        self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site of `runner` that holds at most `max_connections` connections open at once."""

    __slots__ = (
        "_fd_warnings",
        "_host",
        "_max_connections",
        "_open",
        "_port",
        "_refusals",
        "_watch",
        "refused",
    )

    def __init__(self, runner: web.BaseRunner, host: str, port: int, max_connections: int) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._open = 0
        self._refusals = RateLimiter()
        self._fd_warnings = RateLimiter(FD_WARN_INTERVAL_S)
        self._watch: asyncio.Task[None] | None = None
        self.refused = 0

    @property
    def name(self) -> str:
        """The site's address as a URL."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def open_connections(self) -> int:
        """Connections open now (not counting refused ones)."""
        return self._open

    async def start(self) -> None:
        """Listen on the host and port."""
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        self._server = await asyncio.get_running_loop().create_server(
            lambda: self._protocol(server), self._host, self._port, backlog=self._backlog
        )
        if fd_headroom() is not None:
            self._watch = asyncio.create_task(self._watch_descriptors())

    async def stop(self) -> None:
        """Stop listening (and watching descriptors)."""
        if self._watch is not None:
            await stop_tasks([self._watch], "the descriptor watch")
            self._watch = None
        await super().stop()

    async def _watch_descriptors(self) -> None:
        while True:
            await asyncio.sleep(FD_CHECK_S)
            self.check_descriptors()

    def check_descriptors(self) -> None:
        """Warn (once per `FD_WARN_INTERVAL_S` at most) when fewer than `FD_LOW` descriptors are left."""
        found = fd_headroom()
        if found is None or found[1] - found[0] >= FD_LOW:
            return
        used, limit = found
        if self._fd_warnings.admit("low") is not None:
            log.warning(
                "file descriptors nearly used up: %d of %d open (%d connections); new connections "
                "fail once none is left: raise the limit (ulimit -n, LimitNOFILE) or lower "
                "http.max_connections",
                used,
                limit,
                self._open,
            )

    def _protocol(self, server: Any) -> asyncio.Protocol:
        if self._open >= self._max_connections:
            self.refused += 1
            if self._refusals.admit("refused") is not None:
                log.warning(
                    "connection cap of %d reached; refusing new connections (%d refused so far)",
                    self._max_connections,
                    self.refused,
                )
            return _Refused()
        self._open += 1
        inner: asyncio.Protocol = server()
        return _Counted(inner, self._closed)

    def _closed(self) -> None:
        self._open -= 1
