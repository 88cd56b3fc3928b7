"""A loopback stand-in for the Kubernetes Service in front of several connectors replicas.

A real Service sends each request to whichever replica it picks; this one picks by rule, so a test
can make a plugin register through one replica and heartbeat only to another. It counts where
each kind of request was sent (answered or not).
"""

from __future__ import annotations

from collections import Counter

import aiohttp
from aiohttp import web

from connectors.serving import start_app


def kind_of(request: web.Request) -> str:
    """`heartbeat`, `register` (POST /api/v1/plugins) or `other`."""
    if request.path.endswith("/heartbeat"):
        return "heartbeat"
    if request.method == "POST" and request.path == "/api/v1/plugins":
        return "register"
    return "other"


class ServiceRouter:
    """Forwards heartbeats to `beat_to` and every other request to `register_to` (both base URLs)."""

    def __init__(self, register_to: str, beat_to: str) -> None:
        self.register_to = register_to
        self.beat_to = beat_to
        self.counts: Counter[tuple[str, str]] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Serve on 127.0.0.1 (any free port); return the URL."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner, url = await start_app(app)
        return url

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        kind = kind_of(request)
        target = self.beat_to if kind == "heartbeat" else self.register_to
        headers = {k: request.headers[k] for k in ("Authorization", "Content-Type") if k in request.headers}
        self.counts[(kind, target)] += 1  # counted as sent: a busy replica may answer after a timeout
        try:
            async with self._session.request(
                request.method, target + request.path_qs, data=await request.read(), headers=headers
            ) as response:
                body = await response.read()
                return web.Response(status=response.status, body=body, content_type=response.content_type)
        except aiohttp.ClientError as exc:
            return web.json_response({"error": "bad_gateway", "message": str(exc)}, status=502)
