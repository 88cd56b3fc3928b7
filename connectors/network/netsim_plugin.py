"""The network plugin for the network controller simulator (entry point `netsim`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from connectors.contract import Health
from connectors.errors import InvalidRequest, PlatformError, PluginOffline, PluginTimeout, error_from_code
from connectors.network.contract import NetworkPlugin, Path, PathRequest, Topology
from connectors.session import LazySession

M = TypeVar("M", bound=BaseModel)


class NetsimPlugin(NetworkPlugin):
    """Reaches `cpnode-netsim` at `url` with its bearer token."""

    version: ClassVar[str] = "1.0"
    platform: ClassVar[str] = "cpnode-netsim (network controller simulator)"

    def __init__(self, name: str, url: str, token: str, timeout_s: float = 5.0) -> None:
        super().__init__(name)
        self.url = url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._session = LazySession(
            lambda: aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                headers={"Authorization": f"Bearer {self._token}"},
            ),
            lambda: PluginOffline(f"plugin {self.name} was closed on this node"),
        )

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> NetsimPlugin:
        """Options: url (required), token, timeout_s."""
        if "url" not in options:
            raise InvalidRequest("the netsim plugin needs option 'url'")
        return cls(
            name, str(options["url"]), str(options.get("token", "")), float(options.get("timeout_s", 5))
        )

    async def start(self) -> None:
        self._session.open()

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, model: type[M], method: str, path: str, body: Any = None) -> M:
        session = self._session.get()
        try:
            async with session.request(method, self.url + path, json=body) as response:
                data = await response.json(content_type=None)
                if response.status >= 400:
                    raise error_from_code(str(data.get("error")), f"netsim: {data.get('message', '')}")
                return model.model_validate(data)
        except TimeoutError:
            raise PluginTimeout(f"netsim did not answer {method} {path} in {self._timeout_s} s") from None
        except (aiohttp.ClientError, ValueError, ValidationError) as exc:
            raise PlatformError(f"netsim at {self.url} failed: {exc}") from None

    async def health(self) -> Health:
        topology = await self.topology()
        down = [link.id for link in topology.links if not link.up]
        return Health(ok=True, detail=f"links down: {', '.join(down)}" if down else "")

    async def topology(self) -> Topology:
        return await self._call(Topology, "GET", "/v1/topology")

    async def provision(self, request: PathRequest) -> Path:
        return await self._call(Path, "POST", "/v1/paths", request.model_dump())

    async def release(self, path_id: str) -> Path:
        return await self._call(Path, "DELETE", f"/v1/paths/{path_id}")

    async def status(self, path_id: str) -> Path:
        return await self._call(Path, "GET", f"/v1/paths/{path_id}")
