"""LAN discovery with zeroconf (`_cpnode._tcp`): announce this node and note the others seen.

Discovery only proposes: a discovered node is an untrusted candidate (name, URL, claimed key and
its fingerprint) until an operator pins it with `cpnode partners trust NAME --fingerprint FP`.
zeroconf is bound to `interfaces=["127.0.0.1"]` only, always.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from federation.errors import FederationError
from federation.keys import fingerprint, parse_public_key
from federation.partners import check_node_name

log = logging.getLogger("cpnode.federation.discovery")
SERVICE_TYPE = "_cpnode._tcp.local."
INTERFACES = ["127.0.0.1"]
INFO_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class Candidate:
    """A node seen on the network: what it claims, not yet trusted."""

    name: str
    url: str
    public_key: str
    fingerprint: str


def candidate_from_properties(properties: dict[bytes, bytes | None]) -> Candidate:
    """Read a candidate from a service's TXT properties; FederationError when they are malformed."""

    def text(key: bytes) -> str:
        value = properties.get(key)
        if value is None:
            raise FederationError(f"TXT record lacks {key.decode()!r}", code="bad_announcement")
        return value.decode("utf-8", "strict")

    name = check_node_name(text(b"name"))
    public_key = text(b"key")
    url = text(b"url")
    return Candidate(name, url, public_key, fingerprint(parse_public_key(public_key)))


class Discovery:
    """Announces this node and browses for others; `on_candidate` stores what is seen."""

    def __init__(
        self,
        name: str,
        url: str,
        port: int,
        public_key: str,
        on_candidate: Callable[[Candidate], Awaitable[None]],
    ) -> None:
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton("127.0.0.1")],
            port=port,
            properties={"name": name, "url": url, "key": public_key},
            server=f"{name}.local.",
        )
        self._name = name
        self._on_candidate = on_candidate
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Register the service and start browsing."""
        self._zc = AsyncZeroconf(interfaces=INTERFACES, ip_version=IPVersion.V4Only)
        await self._zc.async_register_service(self._info, allow_name_change=False)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._changed])

    def _changed(  # zeroconf calls handlers with these keyword arguments
        self,
        zeroconf: Any,  # noqa: ARG002
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is ServiceStateChange.Removed or name == self._info.name:
            return
        task = asyncio.ensure_future(self._resolve(service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        if self._zc is None:
            return
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zc.zeroconf, INFO_TIMEOUT_MS):
            return
        try:
            candidate = candidate_from_properties(info.properties)
        except (FederationError, UnicodeDecodeError) as exc:
            log.info("ignoring malformed announcement %s: %s", name, exc)
            return
        if candidate.name != self._name:
            await self._on_candidate(candidate)

    async def stop(self) -> None:
        """Stop browsing, withdraw the announcement, close zeroconf."""
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        for task in list(self._tasks):
            task.cancel()
        if self._zc is not None:
            await self._zc.async_unregister_all_services()
            await self._zc.async_close()
            self._zc = None
