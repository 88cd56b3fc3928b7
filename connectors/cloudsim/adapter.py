"""What the two cloudsim adapter plugins share: options, an HTTP session, polling operations to completion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from connectors.contract import ComputePlugin, Health, StateFile, StorageEndpoint
from connectors.errors import InvalidRequest, PlatformError, PluginTimeout

T = TypeVar("T")


class CloudsimAdapter(ComputePlugin):
    """Base of the alpha and beta adapters: credentials, session, operation polling."""

    def __init__(
        self,
        name: str,
        url: str,
        access_key: str,
        secret_key: str,
        *,
        timeout_s: float = 10.0,
        poll_interval_s: float = 0.05,
        operation_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(name)
        self.url = url.rstrip("/")
        self.access_key = access_key
        self.secret_key = secret_key
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.operation_timeout_s = operation_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> CloudsimAdapter:
        """Options: url, access_key, secret_key (required); timeout_s, poll_interval_s, operation_timeout_s."""
        missing = [key for key in ("url", "access_key", "secret_key") if key not in options]
        if missing:
            raise InvalidRequest(f"{cls.__name__} needs option(s) {', '.join(missing)}")
        return cls(
            name,
            str(options["url"]),
            str(options["access_key"]),
            str(options["secret_key"]),
            timeout_s=float(options.get("timeout_s", 10)),
            poll_interval_s=float(options.get("poll_interval_s", 0.05)),
            operation_timeout_s=float(options.get("operation_timeout_s", 60)),
        )

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def session(self) -> aiohttp.ClientSession:
        """The open HTTP session (opened on first use if `start` was skipped)."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        return self._session

    async def send(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """One HTTP call: status and parsed JSON; network failures and timeouts become contract errors."""
        session = await self.session()
        try:
            async with session.request(method, url, **kwargs) as response:
                return response.status, await response.json(content_type=None)
        except TimeoutError:
            raise PluginTimeout(
                f"{self.name}: platform did not answer {method} in {self.timeout_s} s"
            ) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise PlatformError(f"{self.name}: platform at {self.url} failed: {exc}") from None

    async def poll(self, check: Callable[[], Awaitable[T | None]], what: str) -> T:
        """Call `check` until it returns a value, within `operation_timeout_s`."""
        deadline = time.monotonic() + self.operation_timeout_s
        while True:
            result = await check()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise PluginTimeout(f"{self.name}: {what} did not finish in {self.operation_timeout_s} s")
            await asyncio.sleep(self.poll_interval_s)

    async def health(self) -> Health:
        await self.data_source()
        return Health(ok=True)

    async def state_files(self, storage: StorageEndpoint) -> list[StateFile]:
        """The files in an instance's storage bucket (the listing of the storage protocol)."""
        status, data = await self.send(
            "GET",
            f"{storage.url}/storage/v1/{storage.bucket}",
            headers={"Authorization": f"Bearer {storage.token}"},
        )
        if status != 200 or not isinstance(data, dict):
            raise PlatformError(f"{self.name}: storage listing failed ({status})")
        return [StateFile.model_validate(f) for f in data["files"]]
