"""The one base of the node's own coded errors: a stable machine-readable `code`, a message, and
`details` added to the JSON error body.

Errors carry no HTTP status: the node's HTTP edge maps each error class to one
(`node.http.statuses`). The leaf packages (`federation`, `connectors`, `ledger`) keep their own
roots with the same `code` attribute, because the dependency rule forbids them a shared module.
"""

from __future__ import annotations

from typing import Any


class CodedError(Exception):
    """An error with a machine-readable `code` (the class's, or the one given) and JSON `details`."""

    code = "error"

    def __init__(self, message: str, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = details
