"""What the migration steps share: the database, settings, the plugin host, the data express, the
network sites of pools and the cutover hooks; and the calls every step makes through them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.engine import Engine

from connectors.contract import ComputePlugin, Instance, StateFile, StorageEndpoint
from connectors.express import ExpressClient
from connectors.express.endpoints import StorageClient
from connectors.host import PluginHost
from connectors.manifest import Manifest
from connectors.network.contract import NetworkPlugin
from node.db import in_thread
from node.migration.errors import MigrationUnavailable, StepFailed
from node.migration.records import Migration
from node.migration.settings import MigrationSection
from node.tasks.core import Tasks

T = TypeVar("T")
P = ParamSpec("P")
# Called once the cutover has committed, before the source is released, with the migration (its
# `task_id`, `destination_pool`, `destination_instance`): where a task record gets its new instance.
# It may run more than once for one migration (after a restart), so it must be idempotent.
CutoverHook = Callable[[Migration], Awaitable[None]]


def now_ms() -> int:
    """UTC epoch milliseconds."""
    return int(time.time() * 1000)


@dataclass
class MigrationCore:
    """One node's migrations: database, settings, plugin host (None in a process without the
    `connectors` role), the data express's control API, network sites of pools, cutover hooks."""

    engine: Engine
    settings: MigrationSection
    host: PluginHost | None
    sites: Mapping[str, str]
    express_token_path: Path
    hooks: list[CutoverHook] = field(default_factory=list)
    # The tasks service (its buyer orders a partner's pool; its tasks are what migrates), when present.
    tasks: Tasks | None = None
    clock: Callable[[], int] = now_ms
    _express: ExpressClient | None = None

    async def db(self, fn: Callable[Concatenate[Engine, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking database call `fn(engine, ...)` off the event loop."""
        return await in_thread(self.engine, fn, *args, **kwargs)

    def plugins(self) -> PluginHost:
        """The plugin host, or MigrationUnavailable in a process that hosts no plugins."""
        if self.host is None:
            raise MigrationUnavailable(
                "this process hosts no plugins (role connectors); migrations are driven where it runs",
                code="connectors_role_needed",
            )
        return self.host

    async def compute(
        self, pool: str, fn: Callable[[ComputePlugin], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        """Call a compute plugin (under the host's timeout, or `timeout_s`)."""
        return await self.plugins().call(pool, fn, timeout_s)

    async def network(self, name: str, fn: Callable[[NetworkPlugin], Awaitable[T]]) -> T:
        """Call the network plugin `name`."""
        return await self.plugins().call_network(name, fn)

    def express(self) -> ExpressClient:
        """The data express's control API client (one session, kept until `close`)."""
        if self.settings.express_url is None:
            raise StepFailed(
                "no data express is configured ([migration] express_url): state cannot move",
                code="no_express",
            )
        if self._express is None:
            try:
                token = self.express_token_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise StepFailed(
                    f"cannot read the express token {self.express_token_path}: {exc.strerror}",
                    code="no_express",
                ) from None
            self._express = ExpressClient(self.settings.express_url, token)
        return self._express

    async def close(self) -> None:
        """Close the express client's session."""
        if self._express is not None:
            await self._express.close()
            self._express = None

    def _storage_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=max(60.0, self.settings.checkpoint_timeout_s))
        )

    async def storage_files(self, endpoint: StorageEndpoint, side: str) -> list[StateFile]:
        """The files of a storage bucket with sizes and SHA-256 (a JSON listing: no state bytes)."""
        async with self._storage_session() as session:
            return await StorageClient(session, endpoint, side).files()

    async def storage_reachable(self, endpoint: StorageEndpoint, timeout_s: float) -> bool:
        """Whether a TCP connection to a storage endpoint's server opens within `timeout_s`. The kernel
        accepts it for a live process however busy, so load does not make a live endpoint look dead;
        a process that died refuses it, a host that is gone lets it time out."""
        parts = urlsplit(endpoint.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(timeout_s):
                _reader, writer = await asyncio.open_connection(parts.hostname, port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def storage_manifest(self, endpoint: StorageEndpoint) -> Manifest:
        """The manifest of a storage bucket in chunks of the configured size (built by the endpoint,
        which reads each file once; only the JSON of hashes comes back)."""
        async with self._storage_session() as session:
            return await StorageClient(session, endpoint, "source").manifest(self.settings.chunk_bytes)

    async def instance(self, pool: str, instance_id: str) -> Instance:
        """A pool instance as the pool reports it now."""
        return await self.compute(pool, lambda p: p.get_instance(instance_id))

    async def wait_instance(
        self, pool: str, instance_id: str, done: Callable[[Instance], bool], timeout_s: float, what: str
    ) -> Instance:
        """Poll an instance until `done(instance)`; StepFailed after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            instance = await self.instance(pool, instance_id)
            if done(instance):
                return instance
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{what}: instance {instance_id} on {pool} is still {instance.state} after {timeout_s:g} s",
                    code="instance_timeout",
                )
            await asyncio.sleep(self.settings.poll_interval_s)
