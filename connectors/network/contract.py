"""The network plugin contract: topology, provision a path with a bandwidth reservation, release, status.

A network plugin reaches one network controller. Sites are the places pools attach to; links
join two sites with a capacity, a latency and a cost. A path is a reserved route between two sites
with a guaranteed bandwidth; the data express keeps its transfers within it.
"""

from __future__ import annotations

import abc
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from connectors.contract import Model, Name, Plugin, PluginKind

Mbps = Annotated[int, Field(ge=0, le=10**8)]
PathState = Literal["active", "broken", "released"]


class Link(Model):
    """A link between sites `a` and `b` (usable both ways), its capacity and what is still free."""

    id: Name
    a: Name
    b: Name
    bandwidth_mbps: Annotated[int, Field(ge=1, le=10**8)]
    free_mbps: Mbps
    latency_us: Annotated[int, Field(ge=0, le=10**8)]
    cost_minor_per_gb: Annotated[int, Field(ge=0)] = 0
    up: bool = True


class Topology(Model):
    """The controller's sites and links."""

    sites: list[Name]
    links: list[Link]


class PathRequest(Model):
    """A path wanted between two sites with a guaranteed bandwidth (and optionally a latency bound)."""

    src: Name
    dst: Name
    bandwidth_mbps: Annotated[int, Field(ge=1, le=10**8)]
    max_latency_us: Annotated[int, Field(ge=0)] | None = None


class Path(Model):
    """A provisioned path: the sites it crosses, its links, reserved bandwidth and total latency."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
    src: Name
    dst: Name
    hops: list[Name]
    links: list[Name]
    bandwidth_mbps: int
    latency_us: int
    cost_minor_per_gb: int
    state: PathState


class NetworkPlugin(Plugin):
    """Base class of network plugins (网络插件): topology, path provisioning with a bandwidth
    reservation, release and status; built by `from_options(name, options)` like compute plugins."""

    kind: ClassVar[PluginKind] = "network"

    @abc.abstractmethod
    async def topology(self) -> Topology:
        """Sites and links with their free bandwidth."""

    @abc.abstractmethod
    async def provision(self, request: PathRequest) -> Path:
        """Reserve a path with the requested bandwidth, or raise NoPath."""

    @abc.abstractmethod
    async def release(self, path_id: str) -> Path:
        """Release a path's reservation (releasing twice is not an error)."""

    @abc.abstractmethod
    async def status(self, path_id: str) -> Path:
        """A path's current state (`broken` when one of its links failed)."""
