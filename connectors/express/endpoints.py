"""The relay's side of the storage protocol (`connectors.storage`): ranged reads from the source,
verified chunk writes, commits and clean-up at the destination. Every failure becomes a
`TransferError`, fatal or not, here at the edge.

Transient: connection errors, timeouts, 5xx other than 507, 408, 429, and the destination's
`chunk_in_flight`/`busy`/`upload_aborted`. Fatal: 507 (`disk_full`), 401, 403, 413, 416 and a
source whose size differs from the manifest (`manifest_mismatch`), and any other 4xx.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from connectors.contract import StateFile, StorageEndpoint
from connectors.express.errors import BadChunk, ChunksMissing, TransferError, UploadLost
from connectors.express.wire import Answer, ForwardCut, Wire, WireError, forward, wire_target
from connectors.manifest import Manifest, UploadEntry, from_ranges
from connectors.storage_wire import can_splice

PREFIX = "/storage/v1"
_TRANSIENT_CODES = {"chunk_in_flight", "busy", "upload_aborted", "io_error"}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
Pace = Callable[[int], Awaitable[None]]


async def _body(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return {}
    return body if isinstance(body, dict) else {}


async def refusal(response: aiohttp.ClientResponse, side: str) -> TransferError:
    """The TransferError for an error answer from the `side` endpoint."""
    return refusal_of(response.status, await _body(response), response.reason or "", side)


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def refusal_of(status: int, body: dict[str, Any], reason: str, side: str) -> TransferError:
    """The TransferError for an error answer (`status`, its JSON `body`) from the `side` endpoint."""
    code = str(body.get("error") or f"http_{status}")
    message = f"{side} answered {status}: {body.get('message') or reason}"
    if status == 422 and code == "bad_chunk":
        return BadChunk(message)
    if status == 404 and code == "no_upload":
        return UploadLost(message)
    if status == 409 and code == "chunks_missing":
        missing = {i for start, end in body.get("missing", []) for i in range(int(start), int(end))}
        return ChunksMissing(message, missing)
    if status == 416:
        return TransferError(
            "manifest_mismatch", f"{side} file is shorter than the manifest says", fatal=True
        )
    transient = (status >= 500 and status != 507) or status in (408, 429) or code in _TRANSIENT_CODES
    return TransferError(code, message, fatal=not transient)


def connection_error(exc: BaseException, side: str) -> TransferError:
    """A transient TransferError for a failed connection or a timeout."""
    if isinstance(exc, TimeoutError):
        return TransferError("timeout", f"{side} did not answer in time", fatal=False)
    if isinstance(exc, WireError):
        return TransferError("bad_response", f"{side}: {exc}", fatal=False)
    return TransferError("connection_failed", f"{side}: {type(exc).__name__}: {exc}", fatal=False)


class StorageClient:
    """Calls to one storage endpoint (a bucket) through a shared session."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: StorageEndpoint, side: str) -> None:
        self._session = session
        self._base = endpoint.url.rstrip("/") + PREFIX + "/" + quote(endpoint.bucket, safe="")
        self._auth = {"Authorization": f"Bearer {endpoint.token}"}
        self.side = side
        # Chunk bodies over plain sockets (connectors.express.wire) where the endpoint is plain HTTP.
        where = wire_target(endpoint.url)
        timeout_s = session.timeout.sock_read or session.timeout.total or 30.0
        self._wire = None if where is None else Wire(where[0], where[1], timeout_s)

    def close(self) -> None:
        """Close the chunk connections (the session is its owner's to close)."""
        if self._wire is not None:
            self._wire.close()

    def _url(self, path: str = "", query: str = "") -> URL:
        tail = ("/" + quote(path, safe="/")) if path else ""
        return URL(self._base + tail + (f"?{query}" if query else ""), encoded=True)

    async def _call(self, method: str, url: URL, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        try:
            async with self._session.request(method, url, headers=headers, **kwargs) as response:
                if response.status >= 400:
                    raise await refusal(response, self.side)
                return response.status, await _body(response)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self.side) from None

    async def manifest(self, chunk_bytes: int) -> Manifest:
        """The bucket's manifest, built by the endpoint in chunks of `chunk_bytes`."""
        _, body = await self._call("GET", self._url(query=f"manifest&chunk_bytes={chunk_bytes}"))
        try:
            return Manifest.model_validate(body)
        except ValueError as exc:
            raise TransferError(
                "bad_manifest", f"{self.side} sent an invalid manifest: {exc}", fatal=True
            ) from None

    async def files(self) -> list[StateFile]:
        """The bucket's committed files with their sizes and SHA-256 (the endpoint's listing)."""
        _, body = await self._call("GET", self._url())
        try:
            return [StateFile.model_validate(item) for item in body.get("files", [])]
        except (TypeError, ValueError) as exc:
            raise TransferError(
                "bad_response", f"{self.side} sent an invalid listing: {exc}", fatal=False
            ) from None

    async def read_chunk(self, path: str, offset: int, into: memoryview, file_bytes: int) -> None:
        """Fill `into` with bytes [offset, offset + len(into)) of `path` (a ranged GET)."""
        length = len(into)
        headers = self._range_headers(offset, length)
        if self._wire is not None:
            try:
                answer = await self._wire.request("GET", self._url(path).raw_path_qs, headers, into=into)
            except (TimeoutError, OSError, WireError) as exc:
                raise connection_error(exc, self.side) from None
            self._check_read(answer, offset, length, file_bytes)
            return
        try:
            async with self._session.get(self._url(path), headers=headers) as response:
                if response.status >= 400:
                    raise await refusal(response, self.side)
                _check_range(response, offset, length, file_bytes, self.side)
                filled = 0
                async for block in response.content.iter_any():
                    if filled + len(block) > length:
                        raise TransferError("bad_response", f"{self.side} sent more than asked", fatal=False)
                    into[filled : filled + len(block)] = block
                    filled += len(block)
                if filled != length:
                    raise TransferError(
                        "short_read", f"{self.side} sent {filled} of {length} bytes", fatal=False
                    )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self.side) from None

    def _range_headers(self, offset: int, length: int) -> dict[str, str]:
        # identity: a file server may answer a compressed sibling (`NAME.gz`) to a client that accepts gzip
        return {**self._auth, "Range": f"bytes={offset}-{offset + length - 1}", "Accept-Encoding": "identity"}

    def _check_read(self, answer: Answer, offset: int, length: int, file_bytes: int) -> None:
        """TransferError unless `answer` brought bytes [offset, offset + length) of a `file_bytes` file."""
        if answer.status >= 400:
            raise refusal_of(answer.status, _json_body(answer.body), "", self.side)
        length_header = answer.headers.get("content-length", "")
        _check_range_of(
            answer.status,
            answer.headers.get("content-range", ""),
            int(length_header) if length_header.isdigit() else None,
            offset,
            length,
            file_bytes,
            self.side,
        )
        if answer.filled != length:
            raise TransferError(
                "short_read", f"{self.side} sent {answer.filled} of {length} bytes", fatal=False
            )

    def can_forward_from(self, source: StorageClient) -> bool:
        """Whether chunks can go from `source` to this endpoint without passing through this process
        (`forward_chunk`): both plain HTTP, on a system with `splice`."""
        return self._wire is not None and source._wire is not None and can_splice()

    async def forward_chunk(
        self,
        source: StorageClient,
        read: tuple[str, int, int, int],
        index: int,
        pace: Pace,
        slice_bytes: int,
    ) -> bool:
        """Chunk `index` of `path` read from `source` (`read`: path, offset, length, file bytes) and
        sent here as it arrives, through the kernel (`connectors.express.wire.forward`): True if
        written, False if it was held. Only where `can_forward_from(source)`."""
        path, offset, length, file_bytes = read
        if self._wire is None or source._wire is None:
            raise ValueError("forward_chunk needs plain-HTTP endpoints at both ends")
        headers = {**self._auth, "Content-Type": "application/octet-stream"}
        try:
            forwarded = await forward(
                source._wire,
                (source._url(path).raw_path_qs, source._range_headers(offset, length)),
                self._wire,
                (self._url(path, f"chunk={index}").raw_path_qs, headers),
                length,
                pace,
                slice_bytes,
            )
        except ForwardCut as exc:
            raise connection_error(exc.cause, source.side if exc.at_source else self.side) from None
        answer = forwarded.destination
        if answer is not None and answer.status >= 400:
            raise refusal_of(answer.status, _json_body(answer.body), "", self.side)
        source._check_read(forwarded.source, offset, length, file_bytes)
        assert answer is not None  # a source answer that was not forwarded is refused just above
        return answer.status == 201

    async def open_upload(self, path: str, entry: UploadEntry) -> tuple[set[int], bool]:
        """Open (or resume) the upload of `path`: (chunks already committed, file already complete).
        An endpoint of the older protocol refuses the entry's `chunk_root`: it is opened again
        without it (that endpoint then hashes the whole file at the commit)."""
        url = self._url(path, "chunked")
        try:
            _, body = await self._call("POST", url, json=entry.model_dump(exclude_none=True))
        except TransferError as exc:
            if not (exc.code == "invalid_request" and "chunk_root" in str(exc) and entry.chunk_root):
                raise
            older = entry.model_copy(update={"chunk_root": None})
            _, body = await self._call("POST", url, json=older.model_dump(exclude_none=True))
        try:
            committed = from_ranges(body.get("committed", []), len(entry.chunks))
        except (TypeError, ValueError) as exc:
            raise TransferError("bad_response", f"{self.side}: {exc}", fatal=False) from None
        return committed, bool(body.get("complete"))

    async def put_chunk(self, path: str, index: int, data: memoryview, pace: Pace, slice_bytes: int) -> bool:
        """Send chunk `index`, taking `pace(n)` before each slice: True if written, False if it was held."""

        async def body() -> AsyncIterator[memoryview]:
            for start in range(0, len(data), slice_bytes):
                piece = data[start : start + slice_bytes]
                await pace(len(piece))
                yield piece

        if self._wire is not None:
            headers = {**self._auth, "Content-Type": "application/octet-stream"}
            try:
                answer = await self._wire.request(
                    "PUT", self._url(path, f"chunk={index}").raw_path_qs, headers, data, pace, slice_bytes
                )
            except (TimeoutError, OSError, WireError) as exc:
                raise connection_error(exc, self.side) from None
            if answer.status >= 400:
                raise refusal_of(answer.status, _json_body(answer.body), "", self.side)
            return answer.status == 201
        headers = {"Content-Length": str(len(data)), "Content-Type": "application/octet-stream"}
        status, _ = await self._call("PUT", self._url(path, f"chunk={index}"), data=body(), headers=headers)
        return status == 201

    async def commit(self, path: str, entry: UploadEntry) -> int:
        """Commit `path`, naming the file's SHA-256 and its chunk list's root (the destination
        refuses the commit if its upload was opened with another entry): how many chunk writes it
        took (0 if it was committed before)."""
        headers = {"X-Content-SHA256": entry.sha256, "X-Chunk-Root": entry.root()}
        _, body = await self._call("POST", self._url(path, "commit"), headers=headers)
        return int(body.get("chunk_writes", 0))

    async def remove(self, path: str) -> None:
        """Forget the upload of `path` and delete the file if it is there."""
        await self._call("DELETE", self._url(path, "chunked"))
        try:
            await self._call("DELETE", self._url(path))
        except TransferError as exc:
            if exc.code != "not_found":
                raise


def _check_range(
    response: aiohttp.ClientResponse, offset: int, length: int, file_bytes: int, side: str
) -> None:
    content_range = response.headers.get("Content-Range", "")
    _check_range_of(response.status, content_range, response.content_length, offset, length, file_bytes, side)


def _check_range_of(
    status: int,
    content_range: str,
    content_length: int | None,
    offset: int,
    length: int,
    file_bytes: int,
    side: str,
) -> None:
    if status == 200 and offset == 0 and content_length == length == file_bytes:
        return  # a whole small file answered without a range
    match = _CONTENT_RANGE.fullmatch(content_range)
    if status != 206 or match is None:
        raise TransferError("bad_response", f"{side} did not answer the range request", fatal=False)
    start, end, total = (int(g) for g in match.groups())
    if total != file_bytes:
        message = f"{side} file has {total} bytes, the manifest says {file_bytes}"
        raise TransferError("manifest_mismatch", message, fatal=True)
    if (start, end) != (offset, offset + length - 1):
        raise TransferError("bad_response", f"{side} answered range {start}-{end}", fatal=False)
