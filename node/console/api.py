"""The console's only way to the node's data: its own HTTP API, called over loopback with the
signed-in person's bearer token. Every permission the API checks holds in the console, because the
console has no other path to the data.

The call goes to the very socket the browser's request came in on (`local_base`), so it reaches
this process even when `http.public_url` names a proxy in front of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import IO, Any

import aiohttp
from aiohttp import web

API_TIMEOUT_S = 30.0


class ApiRefused(Exception):
    """The API answered an error: its status, code and message, shown to the person as they are."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def local_base(request: web.Request) -> str:
    """http://HOST:PORT of the socket `request` arrived on."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        raise ApiRefused(503, "console_unavailable", "the console cannot tell its own address")
    host, port = str(sockname[0]), int(sockname[1])
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _answer(response: aiohttp.ClientResponse) -> Any:
    """The answer's JSON (or text: a signed note, a log); ApiRefused for an error status."""
    if response.content_type == "application/json":
        data = await response.json()
    else:
        data = await response.text()
    if response.status >= 400:
        detail = data if isinstance(data, dict) else {}
        raise ApiRefused(
            response.status,
            str(detail.get("error", "error")),
            str(detail.get("message", response.reason or "error")),
        )
    return data


class NodeApi:
    """Calls `/api/v1` of this process for one browser request, as `token`."""

    def __init__(self, http: aiohttp.ClientSession, request: web.Request, token: str) -> None:
        self._http = http
        self._base = local_base(request)
        self._headers = {
            "Authorization": f"Bearer {token}",
            "X-Request-Id": request.headers.get("X-Request-Id", "")[:64] or "console",
        }

    async def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        """The JSON answer of one API call; ApiRefused for an error answer."""
        async with self._http.request(
            method, self._base + path, json=body, params=query, headers=self._headers
        ) as response:
            return await _answer(response)

    async def upload(
        self, path: str, field: str, filename: str, data: IO[bytes], fields: dict[str, str]
    ) -> Any:
        """POST a file (multipart, as `field`) with other `fields`; the JSON answer or ApiRefused."""
        form = aiohttp.FormData()
        form.add_field(field, data, filename=filename, content_type="application/octet-stream")
        for name, value in fields.items():
            form.add_field(name, value)
        async with self._http.post(self._base + path, data=form, headers=self._headers) as response:
            return await _answer(response)

    async def download(
        self, request: web.Request, path: str, query: dict[str, str], extra_headers: dict[str, str]
    ) -> web.StreamResponse:
        """Pass a file the API answers through to the browser as it arrives (type and name kept);
        ApiRefused, before anything is sent, for an error answer."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=API_TIMEOUT_S * 4)
        async with self._http.get(
            self._base + path, params=query, headers=self._headers, timeout=timeout
        ) as response:
            if response.status >= 400:
                await _answer(response)
            out = web.StreamResponse(headers=extra_headers)
            for name in ("Content-Type", "Content-Disposition", "Content-Length"):
                if name in response.headers:
                    out.headers[name] = response.headers[name]
            await out.prepare(request)
            async for chunk in response.content.iter_chunked(256 * 1024):
                await out.write(chunk)
            await out.write_eof()
            return out

    async def get(self, path: str, **query: str) -> Any:
        """GET `path` with `query`."""
        return await self.call("GET", path, query=query or None)

    async def maybe(self, path: str, **query: str) -> Any:
        """GET `path`, or None when the API says 404 or 503 (a part this process does not run)."""
        try:
            return await self.get(path, **query)
        except ApiRefused as exc:
            if exc.status in (404, 503):
                return None
            raise

    async def gather(self, *paths: str) -> list[Any]:
        """GET several paths at once (each may be None, as `maybe`)."""
        return list(await asyncio.gather(*(self.maybe(path) for path in paths)))

    async def stream(self, path: str, last_event_id: str | None = None) -> AsyncGenerator[bytes, None]:
        """The raw bytes of an API event stream, as they arrive."""
        headers = {**self._headers, "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self._http.get(self._base + path, headers=headers, timeout=timeout) as response:
            if response.status >= 400:
                data = await response.json(content_type=None)
                detail = data if isinstance(data, dict) else {}
                raise ApiRefused(response.status, str(detail.get("error")), str(detail.get("message")))
            async for block in response.content.iter_any():
                yield block
