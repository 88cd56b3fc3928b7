"""The HTTP status each connectors error class is answered with, in one table: by the plugin
service, the simulated platforms and (through `node.http.statuses`) the node's own API.

The errors carry only their `code`; a remote plugin's client maps an answer back by that code.
"""

from __future__ import annotations

from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    InvalidState,
    NoCapacity,
    NoPath,
    NotFound,
    PlatformError,
    PluginLoadError,
    PluginOffline,
    PluginTimeout,
    Unauthorized,
)

STATUS_BY_ERROR: dict[type[Exception], int] = {
    ConnectorError: 502,
    InvalidRequest: 400,
    NotFound: 404,
    InvalidState: 409,
    NoCapacity: 409,
    NoPath: 409,
    PluginLoadError: 422,
    PluginOffline: 503,
    PluginTimeout: 504,
    PlatformError: 502,
    Unauthorized: 401,
}


def status_in(table: dict[type[Exception], int], error: BaseException) -> int | None:
    """The status `table` gives the nearest class of `error` (its own, then its bases in MRO order)."""
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return None


def status_of(error: ConnectorError) -> int:
    """The HTTP status a connectors error is answered with."""
    return status_in(STATUS_BY_ERROR, error) or 502
