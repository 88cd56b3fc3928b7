"""The `cpnode-cloudsim` process: one dialect's API, its storage endpoint and the simulator's control plane.

Its instances' programs run as sandboxed subprocesses of this process (`connectors.sandbox`) and
are stopped with it.

Failure injection applies to the dialect's API (never to `/_sim`): every call waits `latency_ms`,
then fails if the simulator is `down`, inside an outage window (seconds since start), or by the
seeded random `error_rate_permille`. A failed call changes nothing. `GET /_sim/faults` shows and
`PUT /_sim/faults` replaces the settings at run time; `GET /_sim/stats` counts calls.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import secrets
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from connectors.cloudsim.alpha_api import PREFIX as ALPHA_PREFIX
from connectors.cloudsim.alpha_api import alpha_error, install_alpha
from connectors.cloudsim.beta_api import PATH as BETA_PATH
from connectors.cloudsim.beta_api import beta_error, install_beta
from connectors.cloudsim.inventory import Faults, Inventory, load_inventory
from connectors.cloudsim.state import CloudState
from connectors.errors import ConnectorError
from connectors.serving import serve_until_signal
from connectors.storage import PREFIX as STORAGE_PREFIX
from connectors.storage import StorageService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FaultInjector:
    """Decides, per API call, whether it fails; holds the current fault settings."""

    def __init__(self, faults: Faults, seed: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.faults = faults
        self._random = random.Random(seed)  # noqa: S311 — simulated failures, not security
        self._clock = clock
        self._started = clock()
        self.calls = 0
        self.failed = 0

    def failure(self) -> str | None:
        """Why this call fails (None when it goes through)."""
        self.calls += 1
        elapsed = self._clock() - self._started
        reason = None
        if self.faults.down:
            reason = "simulated outage (forced)"
        elif any(o.start_s <= elapsed < o.end_s for o in self.faults.outages):
            reason = "simulated outage window"
        elif self._random.randrange(1000) < self.faults.error_rate_permille:
            reason = "simulated random failure"
        self.failed += reason is not None
        return reason


def cloudsim_app(
    inventory: Inventory, storage_dir: Path, storage_url: str = ""
) -> tuple[web.Application, CloudState]:
    """The simulator's app and state; `storage_url` is where clients reach this app."""
    state = CloudState(inventory, storage_dir)
    state.storage_token = secrets.token_urlsafe(18)
    state.storage_url = storage_url
    injector = FaultInjector(inventory.faults, inventory.seed)
    error = alpha_error if inventory.dialect == "alpha" else beta_error
    api_prefix = ALPHA_PREFIX if inventory.dialect == "alpha" else BETA_PATH

    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(api_prefix):
            return await handler(request)
        if injector.faults.latency_ms:
            await asyncio.sleep(injector.faults.latency_ms / 1000)
        reason = injector.failure()
        if reason is not None:
            return error(503, reason)
        return await handler(request)

    async def get_faults(_request: web.Request) -> web.Response:
        return web.json_response(injector.faults.model_dump())

    async def put_faults(request: web.Request) -> web.Response:
        try:
            injector.faults = Faults.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": "invalid_request", "message": str(exc)}, status=400)
        return web.json_response(injector.faults.model_dump())

    async def stats(_request: web.Request) -> web.Response:
        live = sum(1 for i in state.instances.values() if i.state != "deleted")
        return web.json_response(
            {
                "calls": injector.calls,
                "failed": injector.failed,
                "instances": live,
                "dialect": inventory.dialect,
                "name": inventory.name,
            }
        )

    async def stop_programs(_app: web.Application) -> None:
        await state.close()

    app = web.Application(middlewares=[faults], client_max_size=1 << 20)
    app.on_cleanup.append(stop_programs)
    if inventory.dialect == "alpha":
        install_alpha(app, state)
    else:
        install_beta(app, state)
    StorageService(state.storage_token, state.bucket).add_routes(app)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_put("/_sim/faults", put_faults)
    app.router.add_get("/_sim/stats", stats)
    assert STORAGE_PREFIX.startswith("/storage")
    return app, state


async def _serve(inventory: Inventory, host: str, port: int, storage_dir: Path, storage_url: str) -> None:
    app, state = cloudsim_app(inventory, storage_dir, storage_url)

    def bound(url: str) -> None:
        state.storage_url = storage_url or url

    announce = f"cpnode-cloudsim ({inventory.dialect} dialect, simulator) listening at {{url}}"
    await serve_until_signal(app, host, port, announce, on_bound=bound)


def main(argv: list[str] | None = None) -> int:
    """`cpnode-cloudsim --inventory FILE [--host H] [--port P] [--storage-dir D] [--storage-url URL]`:
    serve until a signal. SIGXFSZ is ignored, so a file-size limit (RLIMIT_FSIZE) makes storage writes
    fail as `disk_full` instead of killing the simulator."""
    parser = argparse.ArgumentParser(prog="cpnode-cloudsim", description="Cloud platform SIMULATOR.")
    parser.add_argument("--inventory", type=Path, required=True, help="inventory TOML (configs/cloudsim/)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--storage-dir", type=Path, default=None, help="state files (default: a temp dir)")
    parser.add_argument(
        "--storage-url",
        default="",
        help="where clients reach the storage endpoint, e.g. a proxy in front of this process (default: its own URL)",
    )
    args = parser.parse_args(argv)
    if args.storage_url and not re.fullmatch(r"https?://[^/\s]+", args.storage_url):
        parser.error(f"--storage-url must be http(s)://HOST:PORT, got {args.storage_url!r}")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        inventory = load_inventory(args.inventory)
    except ConnectorError as exc:
        parser.error(str(exc))
    if args.storage_dir is None:
        with tempfile.TemporaryDirectory(prefix="cloudsim-") as temporary:
            asyncio.run(_serve(inventory, args.host, args.port, Path(temporary), args.storage_url))
    else:
        asyncio.run(_serve(inventory, args.host, args.port, args.storage_dir, args.storage_url))
    return 0
