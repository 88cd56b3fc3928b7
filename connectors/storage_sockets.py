"""The storage endpoint's listener: chunk bodies received and ranged reads sent on its own sockets,
every other request served by aiohttp.

A chunk body parsed by aiohttp arrives as one `bytes` per block the kernel hands over, each waking
the event loop and copied into the chunk's buffer, and each ranged read costs a request's worth of
aiohttp's machinery; for hundreds of MiB that is much of both endpoints' work. This listener
accepts the connections itself and looks at each request's head without taking it from the socket
(`MSG_PEEK`), then answers two plain forms itself:
- a chunk write as the relay sends it (`PUT /storage/v1/BUCKET/PATH?chunk=I`, `Content-Length`):
  the head is taken, the request checked by `StorageService` exactly as aiohttp's handler does,
  and the body received straight into the chunk's buffer by a thread
  (`connectors.storage_wire.receive_into`), which hashes each slice as it arrives
  (`connectors.uploads.ChunkDigest`);
- a ranged read (`GET /storage/v1/BUCKET/PATH`, `Range: bytes=a-b` within the file, no
  conditions) that the bearer may make: answered 206 with aiohttp's headers, the bytes sent with
  `sendfile` by a thread.
Both need HTTP/1.1, each header once and a path of unreserved characters. Any other request (a
refusal of a read, a chunked body, `Expect`, percent-escapes...) hands the socket, its bytes
untouched, to aiohttp, which serves that connection from then on: every client sees the protocol
of `connectors.storage` unchanged.

A chunk body that stops arriving for `body_timeout_s` is answered 408 `timeout` and the connection
closed; a body cut off by the sender leaves nothing recorded. A chunk write refused before its body
was read (wrong credential, no upload, wrong length, busy) has its body read and dropped, up to a
chunk's maximum size, so the connection stays usable and the sender, which sends before it reads,
sees the answer; a longer one is answered with `Connection: close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import socket
from email.utils import formatdate
from http import HTTPStatus
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_fileresponse import CONTENT_TYPES, FALLBACK_CONTENT_TYPE

from connectors.manifest import MAX_CHUNK_BYTES
from connectors.stopping import stop_tasks
from connectors.storage_wire import (
    HEADERS_END,
    MAX_HEAD,
    Head,
    WireError,
    format_head,
    parse_head,
    receive_into,
    send_file,
)
from connectors.upload_files import UploadError

if TYPE_CHECKING:
    from connectors.storage import StorageService
    from connectors.uploads import ChunkDigest

PREFIX = "/storage/v1"
_PLAIN_CHUNK = re.compile(
    r"^" + re.escape(PREFIX) + r"/([A-Za-z0-9._~-]+)/([A-Za-z0-9._~/-]+)\?chunk=(\d{1,9})$"
)
_PLAIN_GET = re.compile(r"^" + re.escape(PREFIX) + r"/([A-Za-z0-9._~-]+)/([A-Za-z0-9._~/-]+)$")
_RANGE = re.compile(r"^bytes=(\d{1,18})-(\d{1,18})$")
# Headers that make a request one aiohttp answers (conditions, bodies it frames, protocol changes).
_UNUSUAL = {"transfer-encoding", "expect", "upgrade"}
_CONDITIONS = {"if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}
_IDLE_S = 75.0  # a kept connection with no request for this long is closed (aiohttp's default)
_DRAIN = 64 << 10
_SERVER = "cpnode-storage"


class _Dropped(Exception):
    """The connection cannot carry another request."""


class StorageListener:
    """Accepts connections on `host:port` for `app` (serving `connectors.storage`'s routes)."""

    def __init__(
        self,
        service: StorageService,
        app: web.Application,
        host: str = "127.0.0.1",
        port: int = 0,
        body_timeout_s: float = 60.0,
    ) -> None:
        self._service = service
        self._app = app
        self._host, self._port = host, port
        self.body_timeout_s = body_timeout_s
        self._runner: web.AppRunner | None = None
        self._aiohttp: web.Server | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: dict[asyncio.Task[None], socket.socket] = {}
        self.url = ""

    async def start(self) -> str:
        """Start listening; return the base URL (`http://host:port`)."""
        loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None
        self._aiohttp = self._runner.server
        family, kind, proto, _, address = (
            await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        )[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(128)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        bound = listener.getsockname()
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        self.url = f"http://{shown}:{bound[1]}"
        self._accepting = asyncio.create_task(self._accept())
        return self.url

    async def close(self) -> None:
        """Stop accepting, drop the connections served here and stop aiohttp's."""
        if self._accepting is not None:
            await stop_tasks([self._accepting], "the storage endpoint's accept loop")
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await stop_tasks(list(self._connections), "a storage connection")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            try:
                sock, _ = await loop.sock_accept(self._listener)
            except OSError:  # e.g. EMFILE: the connection waits in the backlog
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.create_task(self._serve(sock))
            self._connections[task] = sock
            task.add_done_callback(self._connections.pop)

    async def _serve(self, sock: socket.socket) -> None:
        """Requests on one connection until it closes or one goes to aiohttp."""
        handed = False
        try:
            while True:
                raw = await self._peek_head(sock)
                if raw is None:
                    return
                end = raw.find(HEADERS_END)
                head = _head(raw[:end]) if end >= 0 else None
                chunk = None if head is None else _plain_chunk(head)
                ranged = None if head is None or chunk else self._plain_range(head)
                if chunk is None and ranged is None:
                    assert self._aiohttp is not None  # set by start()
                    await asyncio.get_running_loop().connect_accepted_socket(self._aiohttp, sock)
                    handed = True
                    return
                if chunk is not None:
                    _take(sock, end + len(HEADERS_END))
                    await self._chunk(sock, *chunk)
                elif ranged is not None:
                    await self._range(sock, end + len(HEADERS_END), *ranged)
                    if head is not None and head.headers.get("connection", "").lower() == "close":
                        return
        except (OSError, TimeoutError, WireError, _Dropped):
            return
        finally:
            if not handed:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    async def _peek_head(self, sock: socket.socket) -> bytes | None:
        """The next request's head (with what follows it) left in the socket, or None once the
        client closed or was idle too long. A head that came in parts is looked at again shortly."""
        waited, pause = 0.0, 0.002
        while True:
            try:
                data = sock.recv(MAX_HEAD, socket.MSG_PEEK)
            except BlockingIOError:
                try:
                    await _readable(sock, _IDLE_S if not waited else self.body_timeout_s)
                except TimeoutError:
                    return None
                continue
            if not data:
                return None
            if HEADERS_END in data or len(data) >= MAX_HEAD:
                return data
            if waited > self.body_timeout_s:
                return None
            await asyncio.sleep(pause)
            waited, pause = waited + pause, min(2 * pause, 0.1)

    async def _chunk(self, sock: socket.socket, head: Head, bucket: str, path: str, index: int) -> None:
        """Answer one plain chunk write whose head was taken from `sock`."""
        declared = int(head.headers["content-length"])
        received = False

        async def receive(view: memoryview, digest: ChunkDigest | None) -> None:
            nonlocal received
            received = True
            try:
                each = None if digest is None else digest.update
                filled = await receive_into(sock, view, self.body_timeout_s, each)
            except TimeoutError:
                await self._answer(
                    sock, 408, {"error": "timeout", "message": _late(index, self.body_timeout_s)}, True
                )
                raise _Dropped from None
            if filled < len(view):
                raise _Dropped  # the sender closed: there is nobody to answer

        close = head.headers.get("connection", "").lower() == "close"
        try:
            target, _ = self._service.target(head.headers.get("authorization", ""), bucket, path, True)
            status, body = await self._service.put_chunk(target, index, declared, receive)
        except UploadError as exc:
            status, body = exc.status, exc.as_json()
            if not received:  # refused before its body was read: drop the body, keep the connection
                close = close or declared > MAX_CHUNK_BYTES or not await self._drop(sock, declared)
        await self._answer(sock, status, body, close)
        if close:
            raise _Dropped

    def _plain_range(self, head: Head) -> tuple[int, int, int, os.stat_result, str] | None:
        """A ranged GET this listener answers itself: the file opened, the range's first byte and
        length, the file's stat and path; None for anything aiohttp answers (a refusal, a missing
        file, a range that does not lie within the file, conditions, a body...)."""
        match = _PLAIN_GET.fullmatch(head.start[1])
        wanted = _RANGE.fullmatch(head.headers.get("range", ""))
        if head.start[0] != "GET" or match is None or wanted is None or not _plain_path(*match.groups()):
            return None
        if (_UNUSUAL | _CONDITIONS) & head.headers.keys() or head.headers.get("content-length", "0") != "0":
            return None
        first, last = int(wanted[1]), int(wanted[2])
        bucket, path = match.groups()
        try:
            target, _ = self._service.target(head.headers.get("authorization", ""), bucket, path, False)
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except (UploadError, OSError):
            return None
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode) or not first <= last < stat.st_size:
            os.close(fd)
            return None
        return fd, first, last - first + 1, stat, str(target)

    async def _range(
        self,
        sock: socket.socket,
        taken: int,
        fd: int,
        first: int,
        count: int,
        stat: os.stat_result,
        path: str,
    ) -> None:
        """Take the request's head (`taken` bytes) and send bytes [first, first + count) of the open
        file `fd` as aiohttp's file answer would."""
        try:
            _take(sock, taken)
            headers = {
                "Content-Type": CONTENT_TYPES.guess_type(path)[0] or FALLBACK_CONTENT_TYPE,
                "Etag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
                "Last-Modified": formatdate(math.ceil(stat.st_mtime), usegmt=True),  # as aiohttp rounds it
                "Content-Length": str(count),
                "Accept-Ranges": "bytes",
                "Content-Range": f"bytes {first}-{first + count - 1}/{stat.st_size}",
                "Date": formatdate(usegmt=True),
                "Server": _SERVER,
            }
            head = format_head(f"HTTP/1.1 206 {HTTPStatus(206).phrase}", headers)
            await send_file(sock, head, fd, first, count, self.body_timeout_s)
        finally:
            os.close(fd)

    async def _drop(self, sock: socket.socket, length: int) -> bool:
        """Read and discard `length` bytes of a body; False if the sender stopped or closed first."""
        if length > MAX_CHUNK_BYTES:
            return False
        scratch = memoryview(bytearray(min(length, _DRAIN) or 1))
        loop = asyncio.get_running_loop()
        while length:
            async with asyncio.timeout(self.body_timeout_s):
                got = await loop.sock_recv_into(sock, scratch[: min(length, len(scratch))])
            if not got:
                return False
            length -= got
        return True

    async def _answer(self, sock: socket.socket, status: int, body: dict[str, Any], close: bool) -> None:
        data = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(data)),
            "Date": formatdate(usegmt=True),
            "Server": _SERVER,
        }
        if close:
            headers["Connection"] = "close"
        head = format_head(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", headers)
        async with asyncio.timeout(self.body_timeout_s):
            await asyncio.get_running_loop().sock_sendall(sock, head + data)


def _head(raw: bytes) -> Head | None:
    """The head of an HTTP/1.1 request given each header once, else None (aiohttp answers it)."""
    try:
        head = parse_head(raw)
    except WireError:
        return None
    if len(head.start) != 3 or head.start[2] != "HTTP/1.1" or head.repeated:
        return None
    return head


def _plain_chunk(head: Head) -> tuple[Head, str, str, int] | None:
    """(head, bucket, path, chunk index) of a chunk write this listener answers itself, else None."""
    match = _PLAIN_CHUNK.fullmatch(head.start[1])
    length = head.headers.get("content-length", "")
    if head.start[0] != "PUT" or match is None or not length.isdigit() or _UNUSUAL & head.headers.keys():
        return None
    bucket, path, index = match.groups()
    return (head, bucket, path, int(index)) if _plain_path(bucket, path) else None


def _plain_path(bucket: str, path: str) -> bool:
    # aiohttp's URL handling may normalise these parts: it answers them
    return bucket not in (".", "..") and all(part not in ("", ".", "..") for part in path.split("/"))


def _take(sock: socket.socket, length: int) -> None:
    """Take `length` bytes already in the socket's buffer (they were peeked at)."""
    while length:
        got = len(sock.recv(length))
        if not got:
            raise _Dropped
        length -= got


async def _readable(sock: socket.socket, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        async with asyncio.timeout(timeout_s):
            await ready
    finally:
        loop.remove_reader(fd)


def _late(index: int, timeout_s: float) -> str:
    return f"chunk {index}: no bytes of its body for {timeout_s} s"
