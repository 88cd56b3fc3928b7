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
- A program's run (contract 2): `start_instance` returns once the start is accepted, in state
  `starting` while the pool fetches and checks the program's inputs, else `running`; the run ends
  `stopped` (exit code 0, or stopped on request or at `max_duration_s`, said by `reason`) or
  `failed` (`reason`: an input mismatch before the program ran, a non-zero exit, a signal, a lost
  program). `started_ms`/`ended_ms` say when the program ran; `logs` and `outputs` read what it left.
"""

from __future__ import annotations

import abc
import base64
from pathlib import PurePosixPath
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from connectors.errors import InvalidRequest
from connectors.grants import Grant, grant_key, issue_grant

CONTRACT_VERSION = "2"

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Count = Annotated[int, Field(ge=0, le=10**9)]
Bytes = Annotated[int, Field(ge=0, le=1 << 50)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
InstanceState = Literal["creating", "stopped", "starting", "running", "failed", "deleted"]
PluginKind = Literal["compute", "network"]
# Why a program's run ended other than by exiting 0 on its own (`Instance.reason`).
EndReason = Literal[
    "input_mismatch",  # an input's size or SHA-256 differs from the declared one; the program never ran
    "input_unavailable",  # an input could not be fetched; the program never ran
    "start_failed",  # the command could not be executed
    "exit_nonzero",  # the program exited with a non-zero code
    "killed",  # the program died of a signal the pool did not send
    "max_duration",  # the pool stopped it when `max_duration_s` was reached
    "stopped",  # stopped on request
    "lost",  # the pool lost the program (the pool itself stopped or restarted meanwhile)
]
MAX_LOG_CHUNK_BYTES = 1 << 20


def relative_path(value: str) -> str:
    """`value` if it is a relative POSIX path inside a directory (no `..`, `.`, empty parts, NUL or `\\`)."""
    pure = PurePosixPath(value)
    if (
        not value
        or len(value) > 1024
        or "\x00" in value
        or "\\" in value
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in value.split("/"))
    ):
        raise ValueError(f"must be a relative path without '..', '.' or empty parts, got {value[:80]!r}")
    return value


RelativePath = Annotated[str, AfterValidator(relative_path)]


class Model(BaseModel):
    """Base of every contract message: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Capabilities(Model):
    """What a compute pool can run besides commands. `images`: "none" (commands only), "mapped" (each
    framework in `frameworks` maps to a runtime on the pool, not a container), "any" (runs any image)."""

    images: Literal["none", "mapped", "any"] = "none"
    frameworks: list[Name] = Field(default=[], max_length=256)


class PluginInfo(Model):
    """Who a plugin is: its name, code version, kind, the contract version it speaks, what it can run."""

    name: Name
    version: Text
    kind: PluginKind = "compute"
    contract: str = CONTRACT_VERSION
    platform: Text = Field(description="what the plugin reaches, e.g. 'cloudsim alpha dialect (simulator)'")
    capabilities: Capabilities = Capabilities()


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
    """Free capacity ("water level"): how many more instances of the flavor fit in the region.

    `cost` > 0 says the flavor draws on the region's shared capacity (`DataSource.shared`): one
    instance takes `cost` of its units, so instances of one flavor leave less room for the others."""

    region_id: Name
    flavor_id: Name
    free: Count
    total: Count
    cost: Count = 0


class SharedCapacity(Model):
    """What the flavors of one region share, in the pool's own unit (the `local` pool's slots, a
    cloud's vCPU quota): how many units are free and how many there are."""

    region_id: Name
    unit: Name
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
    shared: list[SharedCapacity] = []
    usage: list[Usage] = []
    measurement: Measurement | None = None


class InstanceSpec(Model):
    """What to create: a flavor in a region, with a caller-chosen name."""

    name: Name
    region_id: Name
    flavor_id: Name


class InputFile(Model):
    """A file the pool fetches into the program's working directory before it starts, and checks:
    a size or SHA-256 that differs fails the run (`input_mismatch`) before the program runs."""

    url: Annotated[str, StringConstraints(pattern=r"^(https?|file)://\S+$", max_length=2000)]
    path: RelativePath
    size_bytes: Bytes
    sha256: Sha256


class Program(Model):
    """What runs on an instance: a command (argv), or an image (with `framework`, the framework it
    provides, e.g. `pytorch`) whose entrypoint gets `command` as arguments; plus environment, input
    files, output paths to keep (relative to the working directory, files or directories) and an
    optional time limit."""

    command: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, max_length=4096
    )
    image: Text | None = None
    framework: Name | None = None
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], str] = {}
    inputs: list[InputFile] = Field(default=[], max_length=256)
    outputs: list[RelativePath] = Field(default=[], max_length=256)
    max_duration_s: Annotated[int, Field(ge=1, le=366 * 24 * 3600)] | None = None

    @model_validator(mode="after")
    def _runnable(self) -> Program:
        if not self.command and self.image is None:
            raise ValueError("a program needs a command or an image")
        paths = [item.path for item in self.inputs]
        if len(set(paths)) != len(paths):
            raise ValueError("two inputs name the same path")
        return self


class Instance(Model):
    """An instance, its state and its program's latest run: when it started and ended (UTC epoch ms),
    its exit code, and `reason` when it did not end by exiting 0 on its own (see `EndReason`)."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
    name: Name
    region_id: Name
    flavor_id: Name
    state: InstanceState
    program: Program | None = None
    exit_code: int | None = None
    created_ms: int
    started_ms: int | None = None
    ended_ms: int | None = None
    reason: EndReason | None = None
    detail: Annotated[str, StringConstraints(max_length=1000)] = ""


class LogChunk(Model):
    """A slice of a program's output (stdout and stderr together), base64 in `data_b64`. `next_offset`
    is where the next read starts; `complete` says the run has ended and nothing follows."""

    offset: Bytes
    next_offset: Bytes
    size_bytes: Bytes
    data_b64: Annotated[str, StringConstraints(max_length=(MAX_LOG_CHUNK_BYTES * 4) // 3 + 4)]
    complete: bool

    def data(self) -> bytes:
        """The chunk's bytes."""
        return base64.b64decode(self.data_b64)

    @classmethod
    def of(cls, offset: int, data: bytes, size_bytes: int, complete: bool) -> LogChunk:
        """A chunk holding `data` read at `offset` of a log `size_bytes` long."""
        return cls(
            offset=offset,
            next_offset=offset + len(data),
            size_bytes=size_bytes,
            data_b64=base64.b64encode(data).decode("ascii"),
            complete=complete,
        )


class OutputFile(Model):
    """One kept output file: its path in the outputs bucket, size and SHA-256 (hex)."""

    path: RelativePath
    size_bytes: Bytes
    sha256: Sha256


class StorageEndpoint(Model):
    """Where the data express reads and writes an instance's state (see `connectors.storage`)."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    bucket: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,120}$")]
    # The pool's own token, or a transfer grant (connectors.grants), which is longer.
    token: Annotated[str, StringConstraints(min_length=1, max_length=8000)]


class Outputs(Model):
    """What a run kept: its output files, and where to read them (a read-only bucket of the storage
    protocol, ranged GETs). `complete` is False while the run has not ended (nothing is kept yet)."""

    instance_id: str
    complete: bool
    files: list[OutputFile]
    storage: StorageEndpoint


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
        """Start the deployed program (state `starting` while inputs are fetched, then `running`, or
        `failed` with a reason); with `restore`, from the state already in its storage."""

    @abc.abstractmethod
    async def stop_instance(self, instance_id: str) -> Instance:
        """Stop the program (its state files stay); stopping an ended run changes nothing."""

    @abc.abstractmethod
    async def logs(self, instance_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        """At most `limit` bytes (≤ MAX_LOG_CHUNK_BYTES) of the program's output from `offset`."""

    @abc.abstractmethod
    async def outputs(self, instance_id: str) -> Outputs:
        """The files the latest run kept (its `outputs` paths), with sizes, hashes and where to read them."""

    @abc.abstractmethod
    async def checkpoint(self, instance_id: str, timeout_s: float) -> Checkpoint:
        """Ask the running program to write its state, wait for it, and say which files hold it."""

    @abc.abstractmethod
    async def storage_endpoint(self, instance_id: str) -> StorageEndpoint:
        """Where the instance's state files are read and written over HTTP."""

    async def transfer_grant(
        self, instance_id: str, files: list[str], migration: str, audience: str, not_before: int, expires: int
    ) -> StorageEndpoint:
        """The instance's storage endpoint with a transfer grant instead of the pool's token: writes of
        `files` only, from `not_before` to `expires` (UTC epoch s), for `migration` (connectors.grants).
        Every pool whose endpoint speaks connectors.storage checks such grants."""
        endpoint = await self.storage_endpoint(instance_id)
        grant = Grant(endpoint.bucket, frozenset(files), migration, audience, not_before, expires)
        try:
            token = issue_grant(grant_key(endpoint.token), grant)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return endpoint.model_copy(update={"token": token})
