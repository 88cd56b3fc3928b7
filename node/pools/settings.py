"""Config sections of the connectors component: `[connectors]` and `[[pools]]` (see node.config).

[connectors]
heartbeat_interval_s = 2      # remote plugins heartbeat this often; 3 missed → offline
refresh_interval_s = 30       # data sources are refreshed this often
refresh_concurrency = 32      # at most this many data-source calls at once
call_timeout_s = 10           # every plugin call

[[pools]]
name = "gpu-bj"
plugin = "cloudsim-alpha"     # entry point in cpnode.connectors
site = "beijing"              # network site the pool attaches to (optional)
options = { url = "http://127.0.0.1:9001", access_key = "...", secret_key = "..." }
identity = { industry = "I", enterprise = "91350100M000100Y43", datacenter = "BJ01", service = "VM" }
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from connectors.health import MISSED_LIMIT
from connectors.identifier import SERVICE_TYPES, USCC_CHARSET, uscc_check_char
from node.config_fields import ConfigSection

if TYPE_CHECKING:  # connectors.offers loads the plugin contract's models: only `identity()` needs it
    from connectors.offers import PoolIdentity

if TYPE_CHECKING:  # the host module pulls in aiohttp and the plugin loader; config loading stays light
    from connectors.host import HostSettings

_POOL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class ConnectorsSection(ConfigSection):
    """`[connectors]`: plugin call timeouts, heartbeats and data-source refresh."""

    call_timeout_s: float = Field(default=10.0, gt=0, le=300)
    heartbeat_interval_s: float = Field(default=2.0, ge=0.05, le=600)
    missed_heartbeats: int = Field(default=MISSED_LIMIT, ge=1, le=100)
    refresh_interval_s: float = Field(default=30.0, ge=0.05, le=86_400)
    refresh_concurrency: int = Field(default=32, ge=1, le=1000)
    registration_validity_s: int = Field(default=365 * 24 * 3600, ge=3600, le=10 * 366 * 24 * 3600)

    def host_settings(self) -> HostSettings:
        """The plain settings the plugin host takes."""
        from connectors.host import HostSettings

        return HostSettings(
            call_timeout_s=self.call_timeout_s,
            heartbeat_interval_s=self.heartbeat_interval_s,
            missed_limit=self.missed_heartbeats,
            refresh_concurrency=self.refresh_concurrency,
        )


class PoolIdentitySection(ConfigSection):
    """The compute-identifier fields an operator declares for a pool."""

    industry: str = Field(pattern=r"^[A-T]$")
    enterprise: str
    datacenter: str = Field(pattern=r"^[A-Z0-9]{2,12}$")
    service: str = "VM"

    @field_validator("enterprise")
    @classmethod
    def _enterprise(cls, value: str) -> str:
        if (
            len(value) != 18
            or any(ch not in USCC_CHARSET for ch in value)
            or uscc_check_char(value[:17]) != value[17]
        ):
            raise ValueError(
                f"must be an 18-character unified social credit code with a valid check character, got {value!r}"
            )
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if value not in SERVICE_TYPES:
            raise ValueError(f"must be one of {', '.join(SERVICE_TYPES)}, got {value!r}")
        return value

    def identity(self) -> PoolIdentity:
        """As the plain data the connectors package takes."""
        from connectors.offers import PoolIdentity

        return PoolIdentity(self.industry, self.enterprise, self.datacenter, self.service)


class PoolSection(ConfigSection):
    """One `[[pools]]` entry: a pool reached through an installed plugin."""

    name: str
    plugin: str = Field(min_length=1, max_length=100)
    options: dict[str, Any] = Field(default_factory=dict)
    site: str | None = None
    identity: PoolIdentitySection | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _POOL_NAME.fullmatch(value):
            raise ValueError(f"must be 1–63 characters of a–z, 0–9, '.', '_' and '-', got {value!r}")
        return value


def _unique_names(pools: list[PoolSection]) -> list[PoolSection]:
    seen: set[str] = set()
    for pool in pools:
        if pool.name in seen:
            raise ValueError(f"pool name {pool.name!r} appears twice")
        seen.add(pool.name)
    return pools


PoolList = Annotated[list[PoolSection], AfterValidator(_unique_names)]
