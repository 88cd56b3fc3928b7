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
    that the node's HTTP edge renders as `{"error": code, "message": ..., **details}`."""

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


class FederationError(CodedError):
    """Root of every error raised by `federation`; `code` is machine-readable."""

    code = "federation_error"


class DocumentError(FederationError, ValueError):
    """A document or body is malformed: not canonical JSON, out of limits, wrong shape."""

    code = "bad_document"


class TooLargeError(DocumentError):
    """A body is larger than the limit; raised before it is parsed."""

    code = "too_large"


class SignatureError(FederationError, ValueError):
    """A signature is missing, malformed, made by an unknown or invalid key, or does not verify."""

    code = "bad_signature"


class KeyFormatError(FederationError, ValueError):
    """A key or key id is not in the `ed25519:...` form."""

    code = "bad_key"


class AuthError(FederationError, PermissionError):
    """A request's signature, key or session token does not authenticate the caller."""

    code = "unauthorized"


class MalformedRequestError(FederationError, ValueError):
    """Signature headers or other protocol headers cannot be parsed at all."""

    code = "malformed_signature"


class NotFoundError(FederationError, LookupError):
    """The named partner, catalog, candidate or key does not exist."""

    code = "not_found"


class ConflictError(FederationError):
    """The request contradicts stored state (same id, different content; config-owned partner)."""

    code = "conflict"


class RateLimitedError(FederationError):
    """Too many concurrent or repeated requests from one peer."""

    code = "rate_limited"


class UnsafeURLError(FederationError, ValueError):
    """A partner URL is malformed or points at a refused address (link-local, metadata, ...)."""

    code = "unsafe_url"


class CatalogRejected(FederationError):
    """A received catalog breaks an acceptance rule; the last good catalog is kept."""

    code = "catalog_rejected"


class PeerError(FederationError):
    """Remote fault: a peer answered with an error, garbage, or too much data."""

    code = "peer_error"

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code)
        self.status = status


class PeerTimeoutError(PeerError, TimeoutError):
    """Remote fault: a peer did not answer, or not completely, within the time limit."""

    code = "peer_timeout"
