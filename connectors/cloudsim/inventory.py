"""The simulator's inventory and failure settings, read from TOML (see configs/cloudsim/)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.errors import InvalidRequest


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
    """Everything a simulator process serves."""

    dialect: Literal["alpha", "beta"]
    name: str = "cloudsim"
    seed: int = 0
    op_delay_ms: Annotated[int, Field(ge=0, le=600_000)] = 200
    accounts: list[SimAccount]
    regions: list[SimRegion]
    flavors: list[SimFlavor]
    stock: list[SimStock]
    faults: Faults = Faults()

    @model_validator(mode="after")
    def _references(self) -> Inventory:
        regions = {r.id for r in self.regions}
        flavors = {f.id for f in self.flavors}
        for item in self.stock:
            if item.region not in regions or item.flavor not in flavors:
                raise ValueError(f"stock names unknown region/flavor {item.region}/{item.flavor}")
        return self


def load_inventory(path: Path) -> Inventory:
    """Read and validate an inventory TOML file, or raise InvalidRequest saying what is wrong."""
    try:
        return Inventory.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise InvalidRequest(f"inventory {path}: {exc}") from None
