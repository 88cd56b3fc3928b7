"""HTTP/1.1 framing of the storage protocol on plain sockets, shared by both ends of a chunk body:
the relay's client (`connectors.express.wire`) and the storage endpoint's own listener
(`connectors.storage_sockets`).

- `parse_head` / `format_head`: a request's or an answer's start line and headers;
- `receive_into`: a body received straight into a buffer by a thread that blocks in one
  `recv(MSG_WAITALL)` until the buffer is full, instead of the event loop waking for every block
  the kernel hands over (most of the loop's work on a body of megabytes); or in slices, each handed
  to a callback in that thread (to hash it while it is still in the cache);
- `send_file`: a head and a file's byte range sent by a thread, the range with `sendfile`;
- `splice_between`: a body taken from one socket and sent on another by a thread, through a pipe
  with `splice` (the bytes never enter this process: on loopback the kernel hands the pages on).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

HEADERS_END = b"\r\n\r\n"
MAX_HEAD = 64 << 10
# A body received with a callback is taken in slices this long, each handed on while it is still
# in the CPU's cache (a core's L2 holds a few MiB).
SLICE_BYTES = 512 << 10
PIPE_BYTES = 1 << 20  # the pipe `splice_between` moves bytes through, as large as Linux allows by default
_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
T = TypeVar("T")
Received = Callable[[memoryview], None]  # told the part of a buffer received so far
# Threads blocked receiving or sending bodies (each returns within its timeout); bodies above the budgets of
# the callers wait for a free one.
_RECEIVERS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="body-receive")


class WireError(Exception):
    """Bytes that are not the HTTP/1.1 this code understands."""


@dataclass(frozen=True)
class Head:
    """A parsed head: the start line's parts, headers (lower-case names, the last one of a name wins)
    and the names given more than once."""

    start: list[str]
    headers: dict[str, str]
    repeated: set[str] = field(default_factory=set)


def parse_head(raw: bytes) -> Head:
    """The head in `raw` (without the blank line that ends it); WireError if a header line is malformed."""
    lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    repeated: set[str] = set()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise WireError(f"a malformed header line: {line[:80]!r}")
        key = name.strip().lower()
        if key in headers:
            repeated.add(key)
        headers[key] = value.strip()
    return Head(lines[0].split(" ", 2), headers, repeated)


def format_head(start: str, headers: dict[str, str]) -> bytes:
    """A head: the start line, the headers and the blank line."""
    lines = [start, *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _blocking(sock: socket.socket, option: int, timeout_s: float) -> None:
    """Make `sock` blocking, each receive (SO_RCVTIMEO) or send (SO_SNDTIMEO) limited to `timeout_s`."""
    seconds = int(timeout_s)
    sock.setblocking(True)
    sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", seconds, int((timeout_s - seconds) * 1e6)))


def _receive_blocking(
    sock: socket.socket, view: memoryview, timeout_s: float, each: Received | None = None
) -> int:
    """Fill `view` from `sock`: the bytes received (fewer if the peer closed). TimeoutError if
    nothing arrived for `timeout_s`. The socket is blocking meanwhile (no event loop watches it).
    With `each`, the body is received in slices of `SLICE_BYTES`, `each` called with the part of
    `view` filled so far after every one (in this thread)."""
    step = SLICE_BYTES if each is not None else len(view)
    try:
        _blocking(sock, socket.SO_RCVTIMEO, timeout_s)
        filled = 0
        while filled < len(view):
            try:
                got = sock.recv_into(view[filled : filled + step], 0, socket.MSG_WAITALL)
            except BlockingIOError:  # SO_RCVTIMEO ran out with nothing received
                raise TimeoutError(f"no bytes for {timeout_s} s after {filled} of {len(view)}") from None
            if not got:
                break
            filled += got
            if each is not None:
                each(view[:filled])
        return filled
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(False)


async def receive_into(
    sock: socket.socket, view: memoryview, timeout_s: float, each: Received | None = None
) -> int:
    """Fill `view` from the non-blocking `sock` in a thread (see `_receive_blocking`). If the caller
    is cancelled the socket is shut down and the thread waited for: `view` is free once this ends."""
    future = asyncio.get_running_loop().run_in_executor(
        _RECEIVERS, _receive_blocking, sock, view, timeout_s, each
    )
    return await _waited(sock, future)


async def _waited(sock: socket.socket | tuple[socket.socket, ...], future: asyncio.Future[T]) -> T:
    """The result of a thread working on `sock` (or socks); if cancelled, the sockets are shut down
    (which ends the thread's blocking call) and the thread waited for before the cancellation goes on."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        for each in sock if isinstance(sock, tuple) else (sock,):
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
        await asyncio.wait([future])
        raise


def _send_file_blocking(
    sock: socket.socket, head: bytes, fd: int, offset: int, count: int, timeout_s: float
) -> None:
    """Send `head`, then `count` bytes of `fd` from `offset` with sendfile. TimeoutError if a send
    makes no progress for `timeout_s`, ConnectionError if the file ends early or the peer goes."""
    try:
        _blocking(sock, socket.SO_SNDTIMEO, timeout_s)
        try:
            sock.sendall(head)
            while count:
                sent = os.sendfile(sock.fileno(), fd, offset, count)
                if not sent:
                    raise ConnectionAbortedError(f"the file ended {count} bytes early")
                offset, count = offset + sent, count - sent
        except BlockingIOError:  # SO_SNDTIMEO ran out with nothing sent
            raise TimeoutError(f"the peer took nothing for {timeout_s} s") from None
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(False)


async def send_file(
    sock: socket.socket, head: bytes, fd: int, offset: int, count: int, timeout_s: float
) -> None:
    """`_send_file_blocking` in a thread; if the caller is cancelled the socket is shut down and the
    thread waited for."""
    future = asyncio.get_running_loop().run_in_executor(
        _RECEIVERS, _send_file_blocking, sock, head, fd, offset, count, timeout_s
    )
    await _waited(sock, future)


class SpliceCut(Exception):
    """`splice_between` stopped: `taking` is True if taking from the source socket failed (it timed
    out or closed), False if sending on the other one did; `cause` is the error."""

    def __init__(self, taking: bool, cause: OSError) -> None:
        super().__init__(str(cause))
        self.taking, self.cause = taking, cause


def can_splice() -> bool:
    """Whether this system moves bytes between sockets with `splice` (Linux)."""
    return hasattr(os, "splice")


def open_pipe() -> tuple[int, int]:
    """A pipe for `splice_between` (read end, write end), made as large as allowed (up to
    PIPE_BYTES), so each `splice` moves up to that much. Close both ends when done."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return read_end, write_end


def _splice_blocking(
    source: socket.socket, target: socket.socket, pipe: tuple[int, int], count: int, timeout_s: float
) -> None:
    """Move exactly `count` bytes from `source` to `target` through the empty `pipe`; SpliceCut if
    either side stops (nothing for `timeout_s`, closed, reset). The pipe is empty again on success."""
    read_end, write_end = pipe
    try:
        _blocking(source, socket.SO_RCVTIMEO, timeout_s)
        _blocking(target, socket.SO_SNDTIMEO, timeout_s)
        moved = 0
        while moved < count:
            try:
                got = os.splice(source.fileno(), write_end, min(count - moved, PIPE_BYTES), flags=_MOVE)
            except BlockingIOError:  # SO_RCVTIMEO ran out with nothing received
                raise SpliceCut(True, TimeoutError(f"no bytes for {timeout_s} s")) from None
            except OSError as exc:
                raise SpliceCut(True, exc) from None
            if not got:
                raise SpliceCut(True, ConnectionResetError(f"closed after {moved} of {count} bytes"))
            while got:
                try:
                    sent = os.splice(read_end, target.fileno(), got, flags=_MOVE)
                except BlockingIOError:  # SO_SNDTIMEO ran out with nothing sent
                    raise SpliceCut(False, TimeoutError(f"the peer took nothing for {timeout_s} s")) from None
                except OSError as exc:
                    raise SpliceCut(False, exc) from None
                got, moved = got - sent, moved + sent
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.setblocking(False)


async def splice_between(
    source: socket.socket, target: socket.socket, pipe: tuple[int, int], count: int, timeout_s: float
) -> None:
    """`_splice_blocking` in a thread; if the caller is cancelled both sockets are shut down and the
    thread waited for."""
    future = asyncio.get_running_loop().run_in_executor(
        _RECEIVERS, _splice_blocking, source, target, pipe, count, timeout_s
    )
    await _waited((source, target), future)
