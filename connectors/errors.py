"""One error tree for connectors, rooted in `ConnectorError`.

Every error carries `code` (machine-readable, stable): an HTTP server answers it as
`{"error": code, "message": ...}` with the status `connectors.statuses` gives its class, and a
remote plugin's answer maps back to the same class by its code (`error_from_code`). `remote` says
whose fault it is: True when the platform or plugin on the other side failed, False when the
caller's request was wrong.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Root of every connectors error; a subclass declares its `code` (and `remote`, when it
    differs from its base's) in its header, as `node.errors.CodedError`'s subclasses do.

    connectors may not import federation (where `CodedError` lives), so this root keeps its own copy
    of that declaration hook."""

    code = "connector_error"
    remote = True

    def __init_subclass__(cls, code: str | None = None, remote: bool | None = None, **kwargs: Any) -> None:
        """Set the subclass's `code` and `remote` from its header."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if remote is not None:
            cls.remote = remote


class InvalidRequest(ConnectorError, ValueError, code="invalid_request", remote=False):
    """The request to a plugin is malformed or names something that cannot exist."""


class IdentifierError(InvalidRequest, code="bad_identifier"):
    """A compute identifier does not follow the syntax; the message names the field."""


class MetricError(InvalidRequest, code="bad_metric"):
    """Metric inputs are unknown or out of range (e.g. a chip not in the catalogue)."""


class UnknownChip(InvalidRequest, code="unknown_chip"):
    """A chip name that no chip in the catalogue answers to."""


class NotFound(ConnectorError, LookupError, code="not_found", remote=False):
    """A plugin, instance, bucket, object or path does not exist."""


class PluginNotFound(NotFound, code="plugin_not_found"):
    """No plugin with that name is registered or installed."""


class InvalidState(ConnectorError, code="invalid_state", remote=False):
    """The operation is not allowed in the resource's current state."""


class NoCapacity(ConnectorError, code="no_capacity", remote=False):
    """The pool has no free capacity for the requested flavor."""


class NoPath(ConnectorError, code="no_path", remote=False):
    """No network path with enough free bandwidth joins the two sites."""


class PluginLoadError(ConnectorError, code="plugin_load_failed", remote=False):
    """A plugin could not be imported or constructed; the node logs it and skips the plugin."""


class PluginOffline(ConnectorError, code="plugin_offline"):
    """The plugin missed its heartbeats or health probes and is treated as absent."""


class PluginTimeout(ConnectorError, TimeoutError, code="plugin_timeout"):
    """A plugin call did not finish within its timeout."""


class PlatformError(ConnectorError, code="platform_error"):
    """The platform behind a plugin answered with an error or could not be reached."""


class Unauthorized(ConnectorError, PermissionError, code="unauthorized", remote=False):
    """Credentials or tokens were missing or wrong."""


# Every class above, by its wire code (the codes are unique).
_BY_CODE: dict[str, type[ConnectorError]] = {
    cls.code: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, ConnectorError)
}


def error_from_code(code: str, message: str) -> ConnectorError:
    """The error class a wire `{"error": code}` names (PlatformError for unknown codes)."""
    return _BY_CODE.get(code, PlatformError)(message)
