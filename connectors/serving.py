"""Running an aiohttp app on a socket, shared by the storage endpoint, simulators, plugin services and
the data express; reading a request's JSON object body, its required fields and a log range."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.contract import MAX_LOG_CHUNK_BYTES
from connectors.errors import InvalidRequest


async def start_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start `app` on `host:port` (0 = any free port); return the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
    return runner, f"http://{shown}:{bound[1]}"


async def wait_for_signal() -> None:
    """Return once SIGINT or SIGTERM arrives."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_until_signal(
    app: web.Application, host: str, port: int, announce: str, on_bound: Callable[[str], None] | None = None
) -> None:
    """Serve `app` until SIGINT/SIGTERM; once listening call `on_bound(url)` and print `announce`."""
    runner, url = await start_app(app, host, port)
    if on_bound is not None:
        on_bound(url)
    print(announce.format(url=url), flush=True)
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()


def read_or_create_token(path: Path, what: str) -> str:
    """The bearer token in `path`, or a new one written there (mode 0600) if the file does not exist.
    Raises ValueError if the token is shorter than 16 characters."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ValueError(f"{what}: the token in {path} is shorter than 16 characters")
    return token


async def json_object(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object (an empty body is `{}` when `empty_ok`); InvalidRequest
    otherwise."""
    if empty_ok and not request.body_exists:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise InvalidRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


def require_strings(data: dict[str, Any], keys: Iterable[str]) -> None:
    """InvalidRequest naming the first of `keys` that `data` lacks as a string."""
    for key in keys:
        if not isinstance(data.get(key), str):
            raise InvalidRequest(f"{key} is required")


def log_range(request: web.Request) -> tuple[int, int]:
    """The `offset` and `limit` query parameters of a logs request (default 0 and 65536);
    InvalidRequest unless they are integers, offset >= 0 and limit at most MAX_LOG_CHUNK_BYTES."""
    try:
        offset, limit = int(request.query.get("offset", "0")), int(request.query.get("limit", "65536"))
    except ValueError:
        raise InvalidRequest("offset and limit must be integers") from None
    if offset < 0 or not 0 <= limit <= MAX_LOG_CHUNK_BYTES:
        raise InvalidRequest(f"offset must be >= 0 and limit 0–{MAX_LOG_CHUNK_BYTES}")
    return offset, limit
