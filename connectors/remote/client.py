"""The node side of an out-of-process plugin: every contract call is one HTTP request."""

from __future__ import annotations

import json
from typing import Any, ClassVar, TypeVar

import aiohttp
from pydantic import BaseModel, TypeAdapter, ValidationError

from connectors.contract import (
    Account,
    Checkpoint,
    ComputePlugin,
    DataSource,
    Health,
    Instance,
    InstanceSpec,
    LogChunk,
    Outputs,
    PluginInfo,
    Program,
    StorageEndpoint,
)
from connectors.errors import ConnectorError, PlatformError, PluginOffline, PluginTimeout, error_from_code
from connectors.session import LazySession

M = TypeVar("M", bound=BaseModel)
_INSTANCES = TypeAdapter(list[Instance])
MAX_RESPONSE_BYTES = 8 << 20


class RemotePlugin(ComputePlugin):
    """A compute plugin that lives in another process, reached at `url` with `call_token`."""

    platform: ClassVar[str] = "out-of-process plugin"

    def __init__(self, name: str, url: str, call_token: str, timeout_s: float = 10.0) -> None:
        super().__init__(name)
        self.url = url.rstrip("/")
        self._token = call_token
        self._timeout_s = timeout_s
        self._session = LazySession(self._new_session, self._closed_error)
        self.remote_version = "?"

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            headers={"Authorization": f"Bearer {self._token}"},
        )

    def _closed_error(self) -> Exception:
        return PluginOffline(f"plugin {self.name} was closed on this node")

    async def start(self) -> None:
        self._session.open()

    async def close(self) -> None:
        await self._session.close()

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        session = self._session.get()  # replaced or removed: a call still in flight is refused
        try:
            async with session.request(method, f"{self.url}/plugin/v1/{path}", json=body) as response:
                raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
                if len(raw) > MAX_RESPONSE_BYTES:
                    raise PlatformError(f"plugin {self.name} answered more than {MAX_RESPONSE_BYTES} bytes")
                try:
                    data = json.loads(raw) if raw else None
                except ValueError:
                    raise PlatformError(f"plugin {self.name} answered non-JSON ({response.status})") from None
                if response.status >= 400:
                    code = data.get("error") if isinstance(data, dict) else None
                    message = data.get("message", "") if isinstance(data, dict) else ""
                    raise error_from_code(str(code or "platform_error"), f"plugin {self.name}: {message}")
                return data
        except TimeoutError:
            raise PluginTimeout(
                f"plugin {self.name} did not answer {method} {path} in {self._timeout_s} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise PlatformError(f"plugin {self.name} at {self.url} is unreachable: {exc}") from None

    async def _model(self, model: type[M], method: str, path: str, body: Any = None) -> M:
        data = await self._request(method, path, body)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise PlatformError(f"plugin {self.name} answered a malformed {model.__name__}: {exc}") from None

    async def info(self) -> PluginInfo:
        info = await self._model(PluginInfo, "GET", "info")
        self.remote_version = info.version
        return info

    async def health(self) -> Health:
        return await self._model(Health, "GET", "health")

    async def ensure_account(self) -> Account:
        return await self._model(Account, "POST", "account")

    async def data_source(self) -> DataSource:
        return await self._model(DataSource, "GET", "datasource")

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        return await self._model(Instance, "POST", "instances", spec.model_dump())

    async def get_instance(self, instance_id: str) -> Instance:
        return await self._model(Instance, "GET", f"instances/{instance_id}")

    async def list_instances(self) -> list[Instance]:
        data = await self._request("GET", "instances")
        try:
            return _INSTANCES.validate_python(data)
        except ValidationError as exc:
            raise PlatformError(f"plugin {self.name} answered a malformed instance list: {exc}") from None

    async def delete_instance(self, instance_id: str) -> Instance:
        return await self._model(Instance, "DELETE", f"instances/{instance_id}")

    async def deploy(self, instance_id: str, program: Program) -> Instance:
        return await self._model(Instance, "POST", f"instances/{instance_id}/deploy", program.model_dump())

    async def start_instance(self, instance_id: str, *, restore: bool = False) -> Instance:
        return await self._model(Instance, "POST", f"instances/{instance_id}/start", {"restore": restore})

    async def stop_instance(self, instance_id: str) -> Instance:
        return await self._model(Instance, "POST", f"instances/{instance_id}/stop")

    async def checkpoint(self, instance_id: str, timeout_s: float) -> Checkpoint:
        return await self._model(
            Checkpoint, "POST", f"instances/{instance_id}/checkpoint", {"timeout_s": timeout_s}
        )

    async def storage_endpoint(self, instance_id: str) -> StorageEndpoint:
        return await self._model(StorageEndpoint, "GET", f"instances/{instance_id}/storage")

    async def logs(self, instance_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        query = f"?offset={int(offset)}&limit={int(limit)}"
        return await self._model(LogChunk, "GET", f"instances/{instance_id}/logs{query}")

    async def outputs(self, instance_id: str) -> Outputs:
        return await self._model(Outputs, "GET", f"instances/{instance_id}/outputs")


__all__ = ["ConnectorError", "RemotePlugin"]
