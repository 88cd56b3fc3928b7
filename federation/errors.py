"""The federation error tree: one root, local-vs-remote fault explicit, stdlib bases kept.

Every error carries a machine-readable `code`; the node's HTTP edge maps the classes to statuses
and renders them as `{"error": code, "message": ...}`. Errors about what a peer sent us are 4xx; `PeerError` and its children are the remote side's fault when *we* call a
peer, and never leave the sync job as an HTTP answer of ours.
"""

from __future__ import annotations

from typing import Any


class CodedError(Exception):
    """An error with a machine-readable `code` (the class's, or the one given) and JSON `details`.

    The base of federation's errors and of the node's own (`node.errors` re-exports it): one shape
    that the node's HTTP edge renders as `{"error": code, "message": ..., **details}`. A subclass
    names its code in its header, so an error table is one class line and a docstring a row."""

    code = "error"

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        """Declare a subclass's code in its header: `class UnknownX(XError, LookupError, code="unknown_x")`."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = details


class FederationError(CodedError, code="federation_error"):
    """Root of every error raised by `federation`; `code` is machine-readable."""


class DocumentError(FederationError, ValueError, code="bad_document"):
    """A document or body is malformed: not canonical JSON, out of limits, wrong shape."""


class TooLargeError(DocumentError, code="too_large"):
    """A body is larger than the limit; raised before it is parsed."""


class SignatureError(FederationError, ValueError, code="bad_signature"):
    """A signature is missing, malformed, made by an unknown or invalid key, or does not verify."""


class KeyFormatError(FederationError, ValueError, code="bad_key"):
    """A key or key id is not in the `ed25519:...` form."""


class AuthError(FederationError, PermissionError, code="unauthorized"):
    """A request's signature, key or session token does not authenticate the caller."""


class MalformedRequestError(FederationError, ValueError, code="malformed_signature"):
    """Signature headers or other protocol headers cannot be parsed at all."""


class NotFoundError(FederationError, LookupError, code="not_found"):
    """The named partner, catalog, candidate or key does not exist."""


class ConflictError(FederationError, code="conflict"):
    """The request contradicts stored state (same id, different content; config-owned partner)."""


class RateLimitedError(FederationError, code="rate_limited"):
    """Too many concurrent or repeated requests from one peer."""


class UnsafeURLError(FederationError, ValueError, code="unsafe_url"):
    """A partner URL is malformed or points at a refused address (link-local, metadata, ...)."""


class CatalogRejected(FederationError, code="catalog_rejected"):
    """A received catalog breaks an acceptance rule; the last good catalog is kept."""


class PeerError(FederationError, code="peer_error"):
    """Remote fault: a peer answered with an error, garbage, or too much data."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code)
        self.status = status


class PeerTimeoutError(PeerError, TimeoutError, code="peer_timeout"):
    """Remote fault: a peer did not answer, or not completely, within the time limit."""
