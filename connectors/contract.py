"""The compute plugin contract: what every pool adapter offers the node, and the data it speaks.

A plugin author subclasses `ComputePlugin` and implements its async methods; the node never sees
a platform's own API. All data is plain frozen models that validate themselves, so the same shapes
travel in-process and as JSON to out-of-process plugins (see `connectors.remote`).

Rules for authors:
- Every method is a coroutine and must not block the event loop (use `asyncio.to_thread` for
  blocking SDKs). The host wraps each call in a timeout, so a slow call fails, it never hangs.
- Raise errors from `connectors.errors` (`NotFound`, `InvalidState`, `NoCapacity`,
  `PlatformError`, ...); anything else is reported as a `PlatformError`.
- Amounts are integer minor units, sizes carry their unit (`memory_mib`), times are UTC epoch ms.
- Asynchronous platform operations are polled inside the plugin: `create_instance` returns once the
  instance exists (state `stopped`) or raises.
"""

from __future__ import annotations

import abc
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

CONTRACT_VERSION = "1"

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Count = Annotated[int, Field(ge=0, le=10**9)]
InstanceState = Literal["creating", "stopped", "running", "failed", "deleted"]
PluginKind = Literal["compute", "network"]


class Model(BaseModel):
    """Base of every contract message: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PluginInfo(Model):
    """Who a plugin is: its name, code version, kind and the contract version it speaks."""

    name: Name
    version: Text
    kind: PluginKind = "compute"
    contract: str = CONTRACT_VERSION
    platform: Text = Field(description="what the plugin reaches, e.g. 'cloudsim alpha dialect (simulator)'")


class Health(Model):
    """Whether the plugin and its platform can serve calls now."""

    ok: bool
    detail: str = ""


class Account(Model):
    """The node's account on the platform."""

    account_id: Text
    platform: Text
    authenticated: bool


class Region(Model):
    """A region or availability zone of the pool; `city` is a GB/T 2260 code for identifiers."""

    id: Name
    name: Text
    city: Annotated[str, StringConstraints(pattern=r"^\d{6}$")]


class Flavor(Model):
    """An instance size: chips (by catalogue key, e.g. `nvidia-a100`), CPUs, memory, storage."""

    id: Name
    chip_model: Name = Field(description="key in the chip catalogue, or 'cpu' for CPU-only flavors")
    chips: Count
    cpus: Annotated[int, Field(ge=1, le=100_000)]
    memory_mib: Annotated[int, Field(ge=1)]
    storage_gib: Count
    network_gbps: Count = 0


class Price(Model):
    """The price of one instance of a flavor in a region, integer minor units per hour."""

    region_id: Name
    flavor_id: Name
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "CNY"
    minor_per_hour: Count


class Capacity(Model):
    """Free capacity ("water level"): how many more instances of the flavor fit in the region."""

    region_id: Name
    flavor_id: Name
    free: Count
    total: Count


class Usage(Model):
    """Dynamic state of a region: CPU utilisation, free memory, free network throughput."""

    region_id: Name
    cpu_utilisation_permille: Annotated[int, Field(ge=0, le=1000)]
    free_memory_permille: Annotated[int, Field(ge=0, le=1000)]
    free_network_mbps: Count


class Measurement(Model):
    """A pool's own measured performance (CPU pools): matrix multiply and memory bandwidth."""

    matmul_gflops: Count
    memory_gbps: Count
    host_cpus: Annotated[int, Field(ge=1)] = 1
    measured_ms: int
    duration_ms: Count


class DataSource(Model):
    """Everything the data-source call returns in one snapshot."""

    regions: list[Region]
    flavors: list[Flavor]
    prices: list[Price]
    capacity: list[Capacity]
    usage: list[Usage] = []
    measurement: Measurement | None = None


class InstanceSpec(Model):
    """What to create: a flavor in a region, with a caller-chosen name."""

    name: Name
    region_id: Name
    flavor_id: Name


class Program(Model):
    """What runs on an instance: a command (argv) or an image reference, plus environment."""

    command: list[Annotated[str, StringConstraints(max_length=4096)]] | None = None
    image: Text | None = None
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], str] = {}


class Instance(Model):
    """An instance and its state; `exit_code` is set once a program has ended."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
    name: Name
    region_id: Name
    flavor_id: Name
    state: InstanceState
    program: Program | None = None
    exit_code: int | None = None
    created_ms: int


class StorageEndpoint(Model):
    """Where the data express reads and writes an instance's state (see `connectors.storage`)."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    bucket: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
    token: Text


class StateFile(Model):
    """One file of a checkpoint, with its size and SHA-256 (hex)."""

    path: Text
    size_bytes: Count
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Checkpoint(Model):
    """The result of asking a program to checkpoint: which files hold its state, and where."""

    instance_id: str
    seq: int
    files: list[StateFile]
    storage: StorageEndpoint


class Plugin(abc.ABC):
    """What every plugin has, compute or network: a name, a version, optional start/close hooks,
    `info()` and `health()`. Subclasses set `version` and `platform` and build from
    `from_options(name, options)`, which is what the entry point `cpnode.connectors` names."""

    kind: ClassVar[PluginKind]
    version: ClassVar[str] = "0"
    platform: ClassVar[str] = "unknown"

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:  # noqa: B027 — optional hook, empty by default
        """Open sessions or servers the plugin needs; called once before any other call."""

    async def close(self) -> None:  # noqa: B027 — optional hook, empty by default
        """Release everything `start` opened; called when the plugin is removed or replaced."""

    async def info(self) -> PluginInfo:
        """Who this plugin is."""
        return PluginInfo(name=self.name, version=self.version, kind=self.kind, platform=self.platform)

    @abc.abstractmethod
    async def health(self) -> Health:
        """Whether the platform answers now."""


class ComputePlugin(Plugin):
    """Base class of compute plugins (算力插件): accounts, data source, lifecycle, checkpoint, storage."""

    kind: ClassVar[PluginKind] = "compute"

    @abc.abstractmethod
    async def ensure_account(self) -> Account:
        """Create the node's account on the platform if needed, authenticate, and return it."""

    @abc.abstractmethod
    async def data_source(self) -> DataSource:
        """Regions, flavors, prices, free capacity and usage, as one snapshot."""

    @abc.abstractmethod
    async def create_instance(self, spec: InstanceSpec) -> Instance:
        """Create an instance (polling the platform's operation) and return it in state `stopped`."""

    @abc.abstractmethod
    async def get_instance(self, instance_id: str) -> Instance:
        """The instance's current state, or NotFound."""

    @abc.abstractmethod
    async def list_instances(self) -> list[Instance]:
        """Every instance of this plugin's account that is not deleted."""

    @abc.abstractmethod
    async def delete_instance(self, instance_id: str) -> Instance:
        """Stop and delete the instance; deleting a deleted instance is not an error."""

    @abc.abstractmethod
    async def deploy(self, instance_id: str, program: Program) -> Instance:
        """Put a program (command or image, plus environment) on a stopped instance."""

    @abc.abstractmethod
    async def start_instance(self, instance_id: str, *, restore: bool = False) -> Instance:
        """Start the deployed program; with `restore`, from the state already in its storage."""

    @abc.abstractmethod
    async def stop_instance(self, instance_id: str) -> Instance:
        """Stop the program (its state files stay)."""

    @abc.abstractmethod
    async def checkpoint(self, instance_id: str, timeout_s: float) -> Checkpoint:
        """Ask the running program to write its state, wait for it, and say which files hold it."""

    @abc.abstractmethod
    async def storage_endpoint(self, instance_id: str) -> StorageEndpoint:
        """Where the instance's state files are read and written over HTTP."""
