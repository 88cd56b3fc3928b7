"""One error tree for connectors, rooted in `ConnectorError`.

Every error carries `code` (machine-readable, stable): an HTTP server answers it as
`{"error": code, "message": ...}` with the status `connectors.statuses` gives its class, and a
remote plugin's answer maps back to the same class by its code (`error_from_code`). `remote` says whose fault it is: True when the platform or
plugin on the other side failed, False when the caller's request was wrong.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every connectors error."""

    code = "connector_error"
    remote = True


class InvalidRequest(ConnectorError, ValueError):
    """The request to a plugin is malformed or names something that cannot exist."""

    code = "invalid_request"
    remote = False


class IdentifierError(InvalidRequest):
    """A compute identifier does not follow the syntax; the message names the field."""

    code = "bad_identifier"


class MetricError(InvalidRequest):
    """Metric inputs are unknown or out of range (e.g. a chip not in the catalogue)."""

    code = "bad_metric"


class UnknownChip(InvalidRequest):
    """A chip name that no chip in the catalogue answers to."""

    code = "unknown_chip"


class NotFound(ConnectorError, LookupError):
    """A plugin, instance, bucket, object or path does not exist."""

    code = "not_found"
    remote = False


class PluginNotFound(NotFound):
    """No plugin with that name is registered or installed."""

    code = "plugin_not_found"


class InvalidState(ConnectorError):
    """The operation is not allowed in the resource's current state."""

    code = "invalid_state"
    remote = False


class NoCapacity(ConnectorError):
    """The pool has no free capacity for the requested flavor."""

    code = "no_capacity"
    remote = False


class NoPath(ConnectorError):
    """No network path with enough free bandwidth joins the two sites."""

    code = "no_path"
    remote = False


class PluginLoadError(ConnectorError):
    """A plugin could not be imported or constructed; the node logs it and skips the plugin."""

    code = "plugin_load_failed"
    remote = False


class PluginOffline(ConnectorError):
    """The plugin missed its heartbeats or health probes and is treated as absent."""

    code = "plugin_offline"


class PluginTimeout(ConnectorError, TimeoutError):
    """A plugin call did not finish within its timeout."""

    code = "plugin_timeout"


class PlatformError(ConnectorError):
    """The platform behind a plugin answered with an error or could not be reached."""

    code = "platform_error"


class Unauthorized(ConnectorError, PermissionError):
    """Credentials or tokens were missing or wrong."""

    code = "unauthorized"
    remote = False


_BY_CODE: dict[str, type[ConnectorError]] = {
    cls.code: cls
    for cls in (
        ConnectorError,
        InvalidRequest,
        IdentifierError,
        MetricError,
        UnknownChip,
        NotFound,
        PluginNotFound,
        InvalidState,
        NoCapacity,
        NoPath,
        PluginLoadError,
        PluginOffline,
        PluginTimeout,
        PlatformError,
        Unauthorized,
    )
}


def error_from_code(code: str, message: str) -> ConnectorError:
    """The error class a wire `{"error": code}` names (PlatformError for unknown codes)."""
    return _BY_CODE.get(code, PlatformError)(message)
