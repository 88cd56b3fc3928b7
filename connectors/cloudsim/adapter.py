"""What the two cloudsim adapter plugins share: options, an HTTP session, polling operations to
completion, reading a platform answer into contract models, a catalogue's shared vCPU quota and a
checkpoint's file listing. What stays in each plugin is its dialect: paths or actions, field names,
units, paging and how a mutation is followed."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp

from connectors.contract import (
    Capabilities,
    Capacity,
    Checkpoint,
    ComputePlugin,
    DataSource,
    Flavor,
    Health,
    PluginInfo,
    Price,
    Region,
    SharedCapacity,
    StateFile,
    StorageEndpoint,
    Usage,
)
from connectors.errors import InvalidRequest, PlatformError, PluginOffline, PluginTimeout
from connectors.session import LazySession

T = TypeVar("T")


def catalogue(
    regions: list[Region],
    flavors: list[Flavor],
    prices: list[Price],
    capacity: Iterable[tuple[str, str, int, int]],
    vcpu_quotas: Iterable[tuple[str, int, int]],
    usage: list[Usage],
) -> DataSource:
    """A simulated platform's data source from its rows: `capacity` as (region, flavor, free, total),
    `vcpu_quotas` as (region, limit, used). In a region with a vCPU quota each instance of a flavor
    takes the flavor's vCPUs from it (`Capacity.cost`); KeyError for a flavor the platform did not list."""
    cpus = {flavor.id: flavor.cpus for flavor in flavors}
    shared = [
        SharedCapacity(region_id=region, unit="vcpus", free=max(0, limit - used), total=limit)
        for region, limit, used in vcpu_quotas
    ]
    limited = {quota.region_id for quota in shared}
    return DataSource(
        regions=regions,
        flavors=flavors,
        prices=prices,
        capacity=[
            Capacity(
                region_id=region,
                flavor_id=flavor,
                free=free,
                total=total,
                cost=cpus[flavor] if region in limited else 0,
            )
            for region, flavor, free, total in capacity
        ],
        shared=shared,
        usage=usage,
    )


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
        self._session = LazySession(
            lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)),
            lambda: PluginOffline(f"plugin {self.name} was closed on this node"),
        )

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
        self._session.open()

    async def close(self) -> None:
        await self._session.close()

    async def session(self) -> aiohttp.ClientSession:
        """The open HTTP session (opened on first use if `start` was skipped; refused once closed)."""
        return self._session.get()

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

    @contextlib.contextmanager
    def parsing(self, what: str) -> Iterator[None]:
        """Around reading a platform answer: a missing key, a wrong type or a value the contract
        refuses becomes PlatformError saying the platform sent an unexpected `what`."""
        try:
            yield
        except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise PlatformError(f"{self.name}: unexpected {what} from the platform: {exc}") from None

    @abc.abstractmethod
    async def frameworks(self) -> list[str]:
        """The frameworks the platform's images run on (empty: it takes no framework programs)."""

    async def info(self) -> PluginInfo:
        frameworks = await self.frameworks()
        capabilities = Capabilities(images="mapped" if frameworks else "none", frameworks=frameworks)
        return PluginInfo(
            name=self.name, version=self.version, platform=self.platform, capabilities=capabilities
        )

    @abc.abstractmethod
    async def checkpoint_seq(self, instance_id: str) -> int:
        """Have the platform checkpoint the instance's program; the checkpoint's sequence number."""

    async def checkpoint(self, instance_id: str, timeout_s: float) -> Checkpoint:  # noqa: ARG002 (the plugin contract; the platform answers at once)
        seq = await self.checkpoint_seq(instance_id)
        storage = await self.storage_endpoint(instance_id)
        return Checkpoint(
            instance_id=instance_id, seq=seq, files=await self.state_files(storage), storage=storage
        )

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
