"""`[console]`: whether the node serves its web console, where, and how long a sign-in lasts."""

from __future__ import annotations

from pydantic import Field, field_validator

from node.config_fields import ConfigSection

API_PATHS = ("/api/", "/fed/", "/healthz", "/readyz", "/metrics")
"""The node's own paths, which the console never covers."""


class ConsoleSection(ConfigSection):
    """`[console]`: served by processes with the `api` role at `path` unless `enabled` is false."""

    enabled: bool = True
    path: str = "/"
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    poll_s: float = Field(default=2.0, ge=0.5, le=600)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in " ?#%\\\"'<>"):
            raise ValueError("must be a URL path starting with '/', such as '/' or '/console/'")
        if value.startswith(API_PATHS):
            raise ValueError(
                "must not overlap the node's API paths (/api/, /fed/, /healthz, /readyz, /metrics)"
            )
        return value if value.endswith("/") else value + "/"
