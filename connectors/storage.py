"""The storage endpoint: a pool's state files over HTTP, with byte ranges and chunked writes.

Protocol (all under `/storage/v1`, `Authorization: Bearer <token>` on every request):
- `GET  /{bucket}`             JSON `{"files": [{"path", "size_bytes", "sha256"}]}`.
- `GET  /{bucket}/{path}`      the file; `Range: bytes=a-b` answers 206 with `Content-Range`.
- `HEAD /{bucket}/{path}`      size without the body.
- `PUT  /{bucket}/{path}`      without `Content-Range`: the whole file, streamed (chunked transfer
  encoding is fine), committed atomically. With `Content-Range: bytes a-b/total`: one chunk of a
  resumable upload; `a` must equal what the server already holds (else 409 with `Range` telling
  it). Answers 202 and `Range: bytes=0-(n-1)` until `total` bytes arrived, then commits and
  answers 201. `X-Content-SHA256` (hex) on the request that completes the file is checked before
  the commit; a mismatch discards the upload (422).
- `GET  /{bucket}/{path}?upload` JSON `{"received": n}` for resuming.
- `DELETE /{bucket}/{path}`    removes the file.

Manifests and verified chunks (the data express, `connectors.manifest`, `connectors.uploads`):
- `GET  /{bucket}?manifest&chunk_bytes=N` the bucket's manifest: every file read once, hashed
  whole and per chunk.
- `POST /{bucket}/{path}?chunked` with the file's manifest entry (`UploadEntry`) opens a chunked
  upload, or resumes the one opened with the same entry; answers `{"chunks", "committed": [[a, b),
  ...], "complete", "chunk_writes"}` (`complete` if the file is already there). `GET ...?chunked`
  answers the same for an open upload.
- `PUT  /{bucket}/{path}?chunk=I` chunk I, in any order, concurrently: 201 once its SHA-256
  matched the entry and it was written and recorded, 200 `{"written": false}` if it was already
  recorded (nothing written), 422 `bad_chunk` if it does not match (send it again), 409
  `chunk_in_flight` while the same chunk is being written, 503 `busy` past the bytes-in-flight budget.
- `POST /{bucket}/{path}?commit` checks that every chunk of the entry is held, fsyncs and renames
  the file: 201 `{"chunk_writes", "committed_now": true}`; 200 if already committed
  (`X-Content-SHA256` given and matching); 409 `chunks_missing` with `missing` ranges to send
  (again); 409 `entry_mismatch` if `X-Chunk-Root` or `X-Content-SHA256` is not the open entry's.
  An entry that names its `chunk_root` (`connectors.manifest.chunk_list_root`) is proven by its
  chunks, each checked as it landed: the file is not hashed again. An entry without one (the
  older form) has the whole file hashed against its `sha256` here, as before.
- `DELETE /{bucket}/{path}?chunked` forgets the upload and its partial data (204 even if none).
Disk full is 507 `disk_full`, a permission error 403 `permission_denied`.

Errors are `{"error": code, "message": ...}` with a 4xx (or 5xx for the server's own trouble)
status. Names containing `.cpnode-` are the protocol's own files: never listed nor addressable.

Besides its own token, the endpoint takes a transfer grant (`connectors.grants`) as the bearer: a
credential it issued for one migration, good only for the files of one bucket it names and only
within its window (401 `credential_invalid` / `credential_expired`, 403 `credential_scope`), and
only while the pool says it is not spent (401 `credential_spent`: e.g. the instance started).

A bucket named `<instance id>.outputs` holds what an instance's run kept (`outputs_bucket`); it is
read-only (PUT and DELETE answer 403 `read_only`). A path that leads through a symlink out of its
bucket is not served.

`StorageServer` receives chunk bodies and sends ranged reads on its own sockets and hands every
other request to the aiohttp routes of `StorageService` (`connectors.storage_sockets`); both paths
check a request with the same methods (`target`, `put_chunk`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from connectors.contract import StateFile
from connectors.grants import Grant, GrantRefused, check_grant, grant_key, is_grant, read_grant
from connectors.manifest import (
    MAX_CHUNK_BYTES,
    MAX_FILES,
    MIN_CHUNK_BYTES,
    Manifest,
    ManifestFile,
    UploadEntry,
    hash_chunks,
)
from connectors.storage_sockets import StorageListener
from connectors.uploads import ChunkDigest, UploadError, Uploads

PREFIX = "/storage/v1"
INTERNAL_MARK = ".cpnode-"  # names holding it are the protocol's own files
PART_SUFFIX = ".cpnode-part"
MAX_ENTRY_BYTES = 10 << 20
# Read request bodies in pieces of up to 1 MiB (aiohttp's default is 256 KiB): fewer, larger reads
# of chunk bodies. For `web.Application(handler_args=...)` of an app serving this protocol.
HANDLER_ARGS = {"read_bufsize": 1 << 20}
OUTPUTS_SUFFIX = ".outputs"
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
BucketResolver = Callable[[str], Path | None]
# Fills a chunk's buffer with its body, telling the digest (when given) each part as it arrives;
# UploadError (400 `bad_length`) if the body does not fit it.
ReceiveBody = Callable[[memoryview, ChunkDigest | None], Awaitable[None]]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def refusal(exc: UploadError) -> web.Response:
    """A refused request's answer."""
    return web.json_response(exc.as_json(), status=exc.status)


def safe_relative(path: str) -> PurePosixPath | None:
    """`path` as a relative POSIX path inside a bucket, or None if it escapes or is hidden machinery."""
    if not path or len(path) > 1024 or "\x00" in path or "\\" in path:
        return None
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("..", ".", "") for part in pure.parts):
        return None
    if INTERNAL_MARK in pure.name:
        return None
    return pure


def outputs_bucket(instance_id: str) -> str:
    """The read-only bucket that serves an instance's kept outputs."""
    return instance_id + OUTPUTS_SUFFIX


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def committed_files(root: Path) -> list[Path]:
    """Every committed file under `root` (no symlinks, no upload machinery), sorted by path."""
    if not root.is_dir():
        return []
    return [
        item
        for item in sorted(root.rglob("*"))
        if item.is_file() and not item.is_symlink() and INTERNAL_MARK not in item.name
    ]


def list_state_files(root: Path) -> list[StateFile]:
    """Every committed file under `root`, sorted by path, with size and SHA-256."""
    return [
        StateFile(
            path=item.relative_to(root).as_posix(), size_bytes=item.stat().st_size, sha256=file_digest(item)
        )
        for item in committed_files(root)
    ]


def build_manifest(root: Path, chunk_bytes: int) -> Manifest:
    """The manifest of every committed file under `root`, each file read once."""
    files = committed_files(root)
    if len(files) > MAX_FILES:
        raise ValueError(f"{len(files)} files; a manifest holds at most {MAX_FILES}")
    entries = []
    for item in files:
        size, whole, chunks = hash_chunks(item, chunk_bytes)
        entries.append(
            ManifestFile(path=item.relative_to(root).as_posix(), size_bytes=size, sha256=whole, chunks=chunks)
        )
    return Manifest(chunk_bytes=chunk_bytes, files=entries)


class _FileAsItIs(web.FileResponse):
    """A file's own bytes. aiohttp's FileResponse answers a client that accepts gzip or brotli with a
    sibling `NAME.gz`/`NAME.br` when one exists; in a bucket that sibling is another state file."""

    def _get_file_path_stat_encoding(
        self,
        accept_encoding: str,  # noqa: ARG002 (aiohttp's signature; NAME is served, never NAME.gz)
    ) -> tuple[Path | None, os.stat_result, str | None]:
        return super()._get_file_path_stat_encoding("")


class StorageService:
    """The HTTP handlers, bound to a token and a bucket → directory resolver."""

    def __init__(
        self,
        token: str,
        resolve: BucketResolver,
        max_object_bytes: int = 64 << 30,
        max_in_flight_bytes: int = 256 << 20,
        clock: Callable[[], float] = time.time,
        grant_spent: Callable[[Grant], str | None] = lambda _grant: None,
    ) -> None:
        self._token = token
        self._grant_key = grant_key(token)
        self._resolve = resolve
        self._clock = clock
        # Why the pool no longer takes a grant it issued (its instance started from the state), or None.
        self._grant_spent = grant_spent
        self.max_object_bytes = max_object_bytes
        self.uploads = Uploads(max_in_flight_bytes)

    def add_routes(self, app: web.Application) -> None:
        """Mount the protocol's routes on `app`."""
        app.router.add_get(PREFIX + "/{bucket}", self._list)
        app.router.add_route("*", PREFIX + "/{bucket}/{path:.+}", self._object)

    def _refused(self, authorization: str, bucket: str, path: str | None) -> UploadError | None:
        """None if the bearer may make this request: the pool's token, or a grant that covers it."""
        if hmac.compare_digest(authorization.encode(), f"Bearer {self._token}".encode()):
            return None
        bearer = authorization.removeprefix("Bearer ")
        if not is_grant(bearer):
            return UploadError(401, "unauthorized", "missing or wrong storage token")
        try:
            grant = read_grant(self._grant_key, bearer)
            check_grant(grant, bucket, path, int(self._clock()))
        except GrantRefused as exc:
            return UploadError(403 if exc.code == "credential_scope" else 401, exc.code, str(exc))
        spent = self._grant_spent(grant)
        if spent is not None:
            return UploadError(401, "credential_spent", spent)
        return None

    def locate(self, authorization: str, bucket: str, path: str | None) -> tuple[Path, PurePosixPath]:
        """The bucket's directory and the relative path a request names (`path` None: the bucket
        itself); UploadError if the bearer may not, or either does not exist or is not allowed."""
        refused = self._refused(authorization, bucket, path)
        if refused is not None:
            raise refused
        root = self._resolve(bucket)
        if root is None:
            raise UploadError(404, "not_found", f"no bucket {bucket!r}")
        rel = safe_relative("x" if path is None else path)
        if rel is None:
            raise UploadError(400, "invalid_request", "path must be relative, without '..' or empty parts")
        return root, rel

    def target(self, authorization: str, bucket: str, path: str, writing: bool) -> tuple[Path, PurePosixPath]:
        """The file a request on an object names, and its path (for messages); UploadError as
        `locate`, and for a write (`writing`) into a read-only outputs bucket."""
        root, rel = self.locate(authorization, bucket, path)
        target = root / Path(*rel.parts)
        if not target.resolve().is_relative_to(root.resolve()):
            raise UploadError(404, "not_found", f"no object {rel.as_posix()!r}")
        if writing and bucket.endswith(OUTPUTS_SUFFIX):
            raise UploadError(403, "read_only", "an outputs bucket is read-only")
        return target, rel

    def _locate(self, request: web.Request) -> tuple[Path, PurePosixPath] | web.Response:
        try:
            return self.locate(
                request.headers.get("Authorization", ""),
                request.match_info["bucket"],
                request.match_info.get("path"),
            )
        except UploadError as exc:
            return refusal(exc)

    async def _list(self, request: web.Request) -> web.Response:
        located = self._locate(request)
        if isinstance(located, web.Response):
            return located
        if "manifest" in request.query:
            raw = request.query.get("chunk_bytes", "")
            if not raw.isdigit() or not MIN_CHUNK_BYTES <= int(raw) <= MAX_CHUNK_BYTES:
                message = f"chunk_bytes must be an integer from {MIN_CHUNK_BYTES} to {MAX_CHUNK_BYTES}"
                return _error(400, "invalid_request", message)
            try:
                manifest = await asyncio.to_thread(build_manifest, located[0], int(raw))
            except ValueError as exc:
                return _error(413, "too_large", str(exc))
            return web.json_response(manifest.model_dump())
        files = await asyncio.to_thread(list_state_files, located[0])
        return web.json_response({"files": [f.model_dump() for f in files]})

    async def _object(self, request: web.Request) -> web.StreamResponse:
        try:
            target, rel = self.target(
                request.headers.get("Authorization", ""),
                request.match_info["bucket"],
                request.match_info["path"],
                request.method in ("PUT", "POST", "DELETE"),
            )
            if {"chunked", "chunk", "commit"} & request.query.keys():
                return await self._chunked(request, target)
        except UploadError as exc:
            return refusal(exc)
        if request.method in ("GET", "HEAD"):
            if "upload" in request.query:
                part = target.with_name(target.name + PART_SUFFIX)
                return web.json_response({"received": part.stat().st_size if part.exists() else 0})
            if not target.is_file():
                return _error(404, "not_found", f"no object {rel.as_posix()!r}")
            return _FileAsItIs(target)  # aiohttp answers Range with 206/416 itself
        if request.method == "PUT":
            return await self._put(request, target)
        if request.method == "DELETE":
            if not target.is_file():
                return _error(404, "not_found", f"no object {rel.as_posix()!r}")
            target.unlink()
            return web.Response(status=204)
        return _error(405, "method_not_allowed", f"{request.method} is not supported here")

    async def _chunked(self, request: web.Request, target: Path) -> web.Response:
        """The chunked-upload calls (see the module's docstring)."""
        uploads, method, query = self.uploads, request.method, request.query
        if method == "PUT" and "chunk" in query:
            raw = query["chunk"]
            if not raw.isdigit() or len(raw) > 9:
                raise UploadError(400, "invalid_request", "chunk must be a chunk index")
            return await self._put_chunk(request, target, int(raw))
        if method == "POST" and "chunked" in query:
            entry = await _read_entry(request)
            if entry.size_bytes > self.max_object_bytes:
                raise UploadError(413, "too_large", f"objects are limited to {self.max_object_bytes} bytes")
            return web.json_response((await uploads.open(target, entry)).as_json())
        if method == "GET" and "chunked" in query:
            status = await uploads.status(target)
            if status is None:
                raise UploadError(404, "no_upload", "no upload of this path is open")
            return web.json_response(status.as_json())
        if method == "POST" and "commit" in query:
            expected = request.headers.get("X-Content-SHA256", "").lower() or None
            root = request.headers.get("X-Chunk-Root", "").lower() or None
            committed, writes = await uploads.commit(target, expected, root)
            body: dict[str, Any] = {"chunk_writes": writes, "committed_now": committed}
            return web.json_response(body, status=201 if committed else 200)
        if method == "DELETE" and "chunked" in query:
            await uploads.abort(target)
            return web.Response(status=204)
        raise UploadError(405, "method_not_allowed", f"{method} with {sorted(query)} is not supported")

    async def put_chunk(
        self, target: Path, index: int, declared: int | None, receive: ReceiveBody
    ) -> tuple[int, dict[str, Any]]:
        """Chunk `index` of the open upload of `target`, its body (`declared` bytes long if known)
        filled into a buffer by `receive`: the answer's status and JSON body; UploadError if refused."""
        length = await self.uploads.chunk_length(target, index)
        if declared is not None and declared != length:
            raise UploadError(400, "bad_length", f"chunk {index} has {length} bytes, not {declared}")
        view = self.uploads.buffer(length)
        digest = ChunkDigest()
        try:
            await receive(view, digest)
            written = await self.uploads.write_chunk(target, index, view, digest)
        finally:
            self.uploads.release(view)
        return (201 if written else 200), {"chunk": index, "written": written}

    async def _put_chunk(self, request: web.Request, target: Path, index: int) -> web.Response:
        async def receive(view: memoryview, _digest: ChunkDigest | None) -> None:
            # Blocks arrive on the event loop: the chunk is hashed after it arrived, in a thread.
            filled = 0
            try:
                # One received block at a time, copied once into the chunk's buffer: `readany` /
                # `iter_any` would first join every buffered block into a new bytes (a second copy).
                content = request.content
                while True:
                    block, _ = await content.readchunk()
                    if not block:
                        if content.at_eof():
                            break
                        continue  # the end of an HTTP chunk of a chunked body
                    if filled + len(block) > len(view):
                        raise UploadError(
                            400, "bad_length", f"chunk {index} is longer than its {len(view)} bytes"
                        )
                    view[filled : filled + len(block)] = block
                    filled += len(block)
            except ConnectionError:
                raise UploadError(400, "bad_length", f"chunk {index} was cut off by the sender") from None
            if filled != len(view):
                raise UploadError(400, "bad_length", f"chunk {index} ended before its {len(view)} bytes")

        status, body = await self.put_chunk(target, index, request.content_length, receive)
        return web.json_response(body, status=status)

    async def _put(self, request: web.Request, target: Path) -> web.Response:
        part = target.with_name(target.name + PART_SUFFIX)
        header = request.headers.get("Content-Range")
        if header is None:
            start, total = 0, None
            part.unlink(missing_ok=True)
        else:
            match = _CONTENT_RANGE.fullmatch(header.strip())
            if not match:
                return _error(400, "invalid_request", "Content-Range must be 'bytes a-b/total'")
            start, end, total = (int(g) for g in match.groups())
            if end < start or end >= total:
                return _error(400, "invalid_request", f"bad range {header!r}")
            held = part.stat().st_size if part.exists() else 0
            if start != held:
                return _error(
                    409,
                    "invalid_state",
                    f"upload holds {held} bytes; next chunk must start there",
                    headers={"Range": f"bytes=0-{held - 1}"} if held else {},
                )
        if (total or 0) > self.max_object_bytes:
            return _error(413, "too_large", f"objects are limited to {self.max_object_bytes} bytes")
        target.parent.mkdir(parents=True, exist_ok=True)
        written = start
        with part.open("r+b" if start else "wb") as handle:
            handle.seek(start)
            async for block in request.content.iter_chunked(_CHUNK):
                written += len(block)
                if written > self.max_object_bytes or (total is not None and written > total):
                    handle.close()
                    part.unlink(missing_ok=True)
                    return _error(413, "too_large", "body is longer than the declared range or the limit")
                handle.write(block)
            handle.truncate(written)
            handle.flush()
            os.fsync(handle.fileno())
        if total is not None and written < total:
            return web.Response(status=202, headers={"Range": f"bytes=0-{written - 1}"})
        expected = request.headers.get("X-Content-SHA256")
        if expected is not None and file_digest(part) != expected.lower():
            part.unlink(missing_ok=True)
            return _error(422, "digest_mismatch", "the uploaded bytes do not match X-Content-SHA256")
        os.replace(part, target)
        body = json.dumps({"path": target.name, "size_bytes": written})
        return web.Response(status=201, text=body, content_type="application/json")


async def _read_entry(request: web.Request) -> UploadEntry:
    if (request.content_length or 0) > MAX_ENTRY_BYTES:
        raise UploadError(413, "too_large", f"a manifest entry is limited to {MAX_ENTRY_BYTES} bytes")
    body = await request.content.read(MAX_ENTRY_BYTES + 1)
    if len(body) > MAX_ENTRY_BYTES:
        raise UploadError(413, "too_large", f"a manifest entry is limited to {MAX_ENTRY_BYTES} bytes")
    try:
        return UploadEntry.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise UploadError(400, "invalid_request", f"{where}: {first['msg']}") from None


class StorageServer:
    """A standalone storage endpoint on `host:port` (port 0 picks a free one): chunk bodies received
    on its own sockets, the rest served by aiohttp (`connectors.storage_sockets`)."""

    def __init__(
        self, service: StorageService, host: str = "127.0.0.1", port: int = 0, body_timeout_s: float = 60.0
    ) -> None:
        self.service = service
        app = web.Application(handler_args=HANDLER_ARGS)
        service.add_routes(app)
        self._listener = StorageListener(service, app, host, port, body_timeout_s)
        self.url = ""

    async def start(self) -> str:
        """Start serving and return the base URL (`http://host:port`)."""
        self.url = await self._listener.start()
        return self.url

    async def close(self) -> None:
        """Stop serving."""
        await self._listener.close()
        await self.service.uploads.close()
