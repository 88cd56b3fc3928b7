"""A scripted in-memory compute plugin for host tests: each pool can be told to hang or crash."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

from connectors.contract import (
    Account,
    Capacity,
    Checkpoint,
    ComputePlugin,
    DataSource,
    Flavor,
    Health,
    Instance,
    InstanceSpec,
    LogChunk,
    Outputs,
    Price,
    Program,
    Region,
    StorageEndpoint,
)
from connectors.errors import NotFound
from connectors.loading import GROUP

BEHAVIOUR: dict[str, str] = {}  # pool name → "ok" | "hang" | "crash"


class ScriptedPool(ComputePlugin):
    """Serves a fixed data source; `BEHAVIOUR[name]` makes its calls hang forever or raise."""

    version: ClassVar[str] = "1.0"
    platform: ClassVar[str] = "scripted test pool"

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> ScriptedPool:
        if options.get("fail"):
            raise ValueError("refusing these options")
        pool = cls(name)
        pool.version_text = str(options.get("version", "1.0"))
        return pool

    version_text = "1.0"

    async def info(self) -> Any:
        base = await super().info()
        return base.model_copy(update={"version": self.version_text})

    async def _act(self) -> None:
        behaviour = BEHAVIOUR.get(self.name, "ok")
        if behaviour == "hang":
            await asyncio.Event().wait()
        if behaviour == "crash":
            raise RuntimeError("scripted crash")

    async def health(self) -> Health:
        await self._act()
        return Health(ok=True)

    async def ensure_account(self) -> Account:
        return Account(account_id="scripted", platform=self.platform, authenticated=True)

    async def data_source(self) -> DataSource:
        await self._act()
        return DataSource(
            regions=[Region(id="r1", name="Region 1", city="310000")],
            flavors=[
                Flavor(
                    id="a100x8",
                    chip_model="nvidia-a100",
                    chips=8,
                    cpus=64,
                    memory_mib=524288,
                    storage_gib=100,
                )
            ],
            prices=[Price(region_id="r1", flavor_id="a100x8", minor_per_hour=20000)],
            capacity=[Capacity(region_id="r1", flavor_id="a100x8", free=3, total=4)],
        )

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        raise NotFound("scripted pool creates nothing")

    async def get_instance(self, instance_id: str) -> Instance:
        raise NotFound(instance_id)

    async def list_instances(self) -> list[Instance]:
        return []

    async def delete_instance(self, instance_id: str) -> Instance:
        raise NotFound(instance_id)

    async def deploy(self, instance_id: str, program: Program) -> Instance:
        raise NotFound(instance_id)

    async def start_instance(self, instance_id: str, *, restore: bool = False) -> Instance:
        raise NotFound(instance_id)

    async def stop_instance(self, instance_id: str) -> Instance:
        raise NotFound(instance_id)

    async def checkpoint(self, instance_id: str, timeout_s: float) -> Checkpoint:
        raise NotFound(instance_id)

    async def storage_endpoint(self, instance_id: str) -> StorageEndpoint:
        raise NotFound(instance_id)

    async def logs(self, instance_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        raise NotFound(instance_id)

    async def outputs(self, instance_id: str) -> Outputs:
        raise NotFound(instance_id)


ENTRY_POINTS = {
    "scripted": EntryPoint("scripted", "tests.connectors.scripted:ScriptedPool", GROUP),
    "missing-module": EntryPoint("missing-module", "tests.connectors.no_such_module:Pool", GROUP),
    "not-a-plugin": EntryPoint("not-a-plugin", "tests.connectors.scripted:BEHAVIOUR", GROUP),
}
