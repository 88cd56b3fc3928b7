"""A hostile partner for tests: a loopback HTTP proxy in front of a real node that passes every
request through and, depending on `mode`, replaces the node's answers to trade requests and
settlements (or answers for it, as if it were down).

The node behind it must take the proxy's origin as its own (`ctx.base_url = proxy.url`), since
signed requests cover the target URI; its partners pin the proxy's URL.

Modes: `pass` (answers untouched), `down` (503 without reaching the node), `deep` (300 nested
brackets), `forged` (the real answer with a field changed under its signature), `huge` (an answer
of `huge_bytes`), `garbage` (not JSON). Every mode but `down` forwards the request first, so the
node really acts on it: a hostile seller may well hold funds for an answer its buyer cannot read.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp import web

from federation import canonical

MODES = ("pass", "down", "deep", "forged", "huge", "garbage")
_TRADE_PATHS = re.compile(r"^/fed/v1/trades(/[^/]+/settlement)?$")
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}


class HostileProxy:
    """Serves on 127.0.0.1 port 0 and forwards to `target` (a node's base URL)."""

    def __init__(self, target: str, huge_bytes: int = 100_000) -> None:
        self.target = target.rstrip("/")
        self.mode = "pass"
        self.huge_bytes = huge_bytes
        self.corrupted = 0  # answers replaced so far
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Start serving; the proxy's base URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._http = aiohttp.ClientSession()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        hostile = request.method == "POST" and _TRADE_PATHS.match(request.path) and self.mode != "pass"
        if hostile and self.mode == "down":
            return web.json_response({"error": "unavailable", "message": "down for a test"}, status=503)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._http.request(
            request.method, self.target + request.path_qs, data=body, headers=headers, allow_redirects=False
        ) as answer:
            status, data = answer.status, await answer.read()
            content_type = answer.headers.get("Content-Type", "application/json")
        if hostile:
            self.corrupted += 1
            status, data = self._corrupt(status, data)
        return web.Response(status=status, body=data, headers={"Content-Type": content_type})

    def _corrupt(self, status: int, data: bytes) -> tuple[int, bytes]:
        if self.mode == "deep":
            return 201, b"[" * 300 + b"]" * 300
        if self.mode == "huge":
            return 201, b'{"pad": "' + b"x" * self.huge_bytes + b'"}'
        if self.mode == "garbage":
            return 201, b"<html>upstream hiccup</html>"
        document: dict[str, Any] = canonical.decode(data)
        document["issued_ts"] = int(document.get("issued_ts", 0)) + 1  # the signature no longer covers it
        return status, canonical.encode(document)
