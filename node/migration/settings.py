"""Config section of migrations: `[migration]` (see node.config).

[migration]
express_url = "http://127.0.0.1:8790"     # the data express's control API (`cpnode express`)
express_token_path = "keys/express.token" # its bearer token (the file `cpnode express` wrote)
network = "backbone"          # the network plugin that provisions paths (none: no paths reserved)
bandwidth_mbps = 1000         # path bandwidth asked for when a request names none
sites = { edge = "chengdu" }  # network sites of pools not under [[pools]] (gateways, remote plugins)
workers = 2                   # the express's concurrent chunk workers per transfer
chunk_mib = 8                 # chunk size of a transfer
rehash = false                # verifying re-reads and hashes every file at the destination (slower)
checkpoint_timeout_s = 60     # how long a source has to write its checkpoint
start_timeout_s = 60          # how long an instance has to start (destination, or source on undo)
step_attempts = 5             # a step failing this many times in a row (transiently) fails
retry_delay_s = 1.0           # first wait between tries; doubles, up to 8 times as long
transfer_resumes = 3          # a stalled transfer is resumed this often before it fails
stall_s = 5.0                 # no progress this long with the destination's storage not answering: roll back
poll_interval_s = 0.25        # how often a running transfer, an instance or a path is looked at
supervise_every_s = 1.0       # how often unfinished migrations are picked up (also after a restart)
lease_ttl_s = 30              # one replica drives a migration; another takes over after this
credential_s = 3600           # how long a partner's transfer credential is asked to be valid
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from node.config_fields import ConfigSection

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class MigrationSection(ConfigSection):
    """`[migration]`: the data express, the network plugin, transfer and retry settings."""

    express_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    express_token_path: str = "keys/express.token"  # noqa: S105 - a path, not a secret
    network: str | None = None
    bandwidth_mbps: int = Field(default=1000, ge=1, le=10**8)
    sites: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    workers: int = Field(default=2, ge=1, le=64)
    chunk_mib: int = Field(default=8, ge=1, le=64)
    rehash: bool = False
    checkpoint_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    start_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    step_attempts: int = Field(default=5, ge=1, le=100)
    retry_delay_s: float = Field(default=1.0, gt=0, le=600)
    transfer_resumes: int = Field(default=3, ge=0, le=100)
    stall_s: float = Field(default=5.0, gt=0, le=3600)
    poll_interval_s: float = Field(default=0.25, ge=0.01, le=10)
    supervise_every_s: float = Field(default=1.0, ge=0.05, le=600)
    lease_ttl_s: float = Field(default=30.0, ge=1, le=3600)
    credential_s: int = Field(default=3600, ge=1, le=24 * 3600)

    @field_validator("network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(f"must name a plugin (a–z, 0–9, '.', '_', '-'), got {value!r}")
        return value

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: dict[str, str]) -> dict[str, str]:
        for pool, site in value.items():
            if not _NAME.fullmatch(pool) or not _NAME.fullmatch(site):
                raise ValueError(f"pool and site names are a–z, 0–9, '.', '_', '-', got {pool!r} = {site!r}")
        return value

    @property
    def chunk_bytes(self) -> int:
        """The chunk size of a transfer in bytes."""
        return self.chunk_mib << 20
