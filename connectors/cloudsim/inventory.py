"""The simulator's inventory and failure settings, read from TOML (see configs/cloudsim/)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from connectors.errors import InvalidRequest
from connectors.sandbox import InputPolicy, SandboxSettings

Framework = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimAccount(_Strict):
    """Credentials the simulator accepts (alpha: token exchange; beta: request signing)."""

    access_key: str
    secret_key: str


class SimRegion(_Strict):
    """A region with its GB/T 2260 city code."""

    id: str
    name: str
    city: str


class SimFlavor(_Strict):
    """An instance type; `chip` is a chip catalogue key (or "cpu")."""

    id: str
    chip: str
    chips: int = Field(ge=0)
    cpus: int = Field(ge=1)
    memory_mib: int = Field(ge=1024, multiple_of=1024)
    storage_gib: int = Field(ge=0)
    network_gbps: int = Field(default=0, ge=0)


class SimStock(_Strict):
    """A flavor sold in a region: its price (fen per hour, a multiple of 1 fen) and how many exist."""

    region: str
    flavor: str
    price_minor_per_hour: int = Field(ge=0)
    total: int = Field(ge=0)


class SimQuota(_Strict):
    """A region's limit on the vCPUs of all instances together, as clouds set per-region quotas:
    every flavor sold there draws on it."""

    region: str
    vcpus: int = Field(ge=0)


class Outage(_Strict):
    """A window, in seconds since the simulator started, when every API call fails."""

    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)


class Faults(_Strict):
    """Failure injection: added latency, a random error rate, outage windows, forced outage."""

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    error_rate_permille: int = Field(default=0, ge=0, le=1000)
    outages: list[Outage] = []
    down: bool = False


class Inventory(_Strict):
    """Everything a simulator process serves. Programs run for real in the sandbox: `runtimes` maps
    a framework to the local runtime its images run on (no containers), `sandbox_memory_mib` is each
    program's address-space limit, `input_roots` the directories `file://` inputs may come from."""

    dialect: Literal["alpha", "beta"]
    name: str = "cloudsim"
    seed: int = 0
    op_delay_ms: Annotated[int, Field(ge=0, le=600_000)] = 200
    accounts: list[SimAccount]
    regions: list[SimRegion]
    flavors: list[SimFlavor]
    stock: list[SimStock]
    quotas: list[SimQuota] = []
    faults: Faults = Faults()
    runtimes: dict[Framework, list[Annotated[str, StringConstraints(min_length=1)]]] = {}
    sandbox_memory_mib: Annotated[int, Field(ge=64, le=1 << 20)] = 4096
    max_input_bytes: Annotated[int, Field(ge=0)] = 1 << 30
    input_roots: list[str] = []
    max_log_bytes: Annotated[int, Field(ge=1024)] = 64 << 20
    checkpoint_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    def sandbox_settings(self) -> SandboxSettings:
        """How this simulator's programs run."""
        return SandboxSettings(
            memory_bytes=self.sandbox_memory_mib << 20,
            runtimes={name: tuple(argv) for name, argv in self.runtimes.items() if argv},
            inputs=InputPolicy(
                max_input_bytes=self.max_input_bytes, input_roots=tuple(Path(r) for r in self.input_roots)
            ),
            max_log_bytes=self.max_log_bytes,
        )

    @model_validator(mode="after")
    def _references(self) -> Inventory:
        regions = {r.id for r in self.regions}
        flavors = {f.id for f in self.flavors}
        for item in self.stock:
            if item.region not in regions or item.flavor not in flavors:
                raise ValueError(f"stock names unknown region/flavor {item.region}/{item.flavor}")
        for quota in self.quotas:
            if quota.region not in regions:
                raise ValueError(f"quota names unknown region {quota.region}")
        return self


def load_inventory(path: Path) -> Inventory:
    """Read and validate an inventory TOML file, or raise InvalidRequest saying what is wrong."""
    try:
        return Inventory.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise InvalidRequest(f"inventory {path}: {exc}") from None
