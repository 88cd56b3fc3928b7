"""Config section of services: `[services]` (see node.config).

[services]
site = "beijing"                 # the site of users who name none (default: none, latency unknown)
health_interval_s = 1.0          # how often every replica's health path is asked
health_timeout_s = 0.8           # how long one health check may take
load_ms_per_request = 2.0        # what one in-flight request adds to a replica's score (ms)
unknown_latency_ms = 50.0        # the latency assumed when the network knows no path
tolerance_ms = 5.0               # replicas scored within this of the best share the traffic
connect_timeout_s = 2.0          # how long connecting to a replica may take before the next is tried
read_timeout_s = 60.0            # how long a replica may send nothing (before its answer or within it)
endpoint_hosts = ["127.0.0.1", "::1", "localhost"]  # hosts a replica's endpoint may name
partner_sites = { b = "shanghai" }                  # where a partner's replicas run, by partner
latency_ms = { "beijing/shanghai" = 12.0 }          # site-to-site latencies (both ways) the
                                                    # network view does not know
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ServicesSection(BaseModel):
    """`[services]`: steering users' requests to services' replicas."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    site: str | None = Field(default=None, min_length=1, max_length=63)
    health_interval_s: float = Field(default=1.0, ge=0.05, le=600)
    health_timeout_s: float = Field(default=0.8, gt=0, le=60)
    load_ms_per_request: float = Field(default=2.0, ge=0, le=10_000)
    unknown_latency_ms: float = Field(default=50.0, ge=0, le=100_000)
    tolerance_ms: float = Field(default=5.0, ge=0, le=100_000)
    connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    read_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    endpoint_hosts: list[str] = Field(default=["127.0.0.1", "::1", "localhost"], max_length=100)
    partner_sites: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    latency_ms: dict[str, float] = Field(default_factory=dict, max_length=100_000)

    @field_validator("latency_ms")
    @classmethod
    def _pairs(cls, value: dict[str, float]) -> dict[str, float]:
        for key, ms in value.items():
            parts = key.split("/")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{key!r}: name two sites as 'a/b'")
            if ms < 0:
                raise ValueError(f"{key!r}: a latency cannot be negative")
        return value
