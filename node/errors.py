"""The one base of the node's own coded errors: a stable machine-readable `code`, a message, and
`details` added to the JSON error body.

It is federation's base (`federation.errors.CodedError`, re-exported here), so the node's errors and
federation's share one type; `federation` cannot import `node`, so the base lives there. Errors carry
no HTTP status: the node's HTTP edge maps each error class to one (`node.http.statuses`). The other
leaf packages (`connectors`, `ledger`) keep their own roots with the same `code` attribute, because
the dependency rule forbids them a shared module.

An error table is declared one class a row, its code in the header and what it means in the
docstring: `class UnknownServiceError(ServiceError, LookupError, code="unknown_service")`.
"""

from __future__ import annotations

from federation.errors import CodedError

__all__ = ["CodedError", "FieldError"]


class FieldError(CodedError, ValueError):
    """A request value that does not validate: `field` names it (also in `details`), `reason` says
    what is wrong, and the message is `field: reason`. Packages subclass it with their own code."""

    def __init__(self, field: str, reason: str, code: str | None = None) -> None:
        super().__init__(f"{field}: {reason}", code, field=field)
        self.field = field
        self.reason = reason
