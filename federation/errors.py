"""The federation error tree: one root, local-vs-remote fault explicit, stdlib bases kept.

Every error carries a machine-readable `code` and the HTTP status it maps to (`http_status`), so
the node's error middleware renders it as `{"error": code, "message": ...}`. Errors about what a
peer sent us are 4xx; `PeerError` and its children are the remote side's fault when *we* call a
peer, and never leave the sync job as an HTTP answer of ours.
"""

from __future__ import annotations


class FederationError(Exception):
    """Root of every error raised by `federation`; `code` is machine-readable."""

    code = "federation_error"
    http_status = 400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class DocumentError(FederationError, ValueError):
    """A document or body is malformed: not canonical JSON, out of limits, wrong shape."""

    code = "bad_document"


class TooLargeError(DocumentError):
    """A body is larger than the limit; raised before it is parsed."""

    code = "too_large"
    http_status = 413


class SignatureError(FederationError, ValueError):
    """A signature is missing, malformed, made by an unknown or invalid key, or does not verify."""

    code = "bad_signature"
    http_status = 401


class KeyFormatError(FederationError, ValueError):
    """A key or key id is not in the `ed25519:...` form."""

    code = "bad_key"


class AuthError(FederationError, PermissionError):
    """A request's signature, key or session token does not authenticate the caller."""

    code = "unauthorized"
    http_status = 401


class MalformedRequestError(FederationError, ValueError):
    """Signature headers or other protocol headers cannot be parsed at all."""

    code = "malformed_signature"


class NotFoundError(FederationError, LookupError):
    """The named partner, catalog, candidate or key does not exist."""

    code = "not_found"
    http_status = 404


class ConflictError(FederationError):
    """The request contradicts stored state (same id, different content; config-owned partner)."""

    code = "conflict"
    http_status = 409


class RateLimitedError(FederationError):
    """Too many concurrent or repeated requests from one peer."""

    code = "rate_limited"
    http_status = 429


class UnsafeURLError(FederationError, ValueError):
    """A partner URL is malformed or points at a refused address (link-local, metadata, ...)."""

    code = "unsafe_url"


class CatalogRejected(FederationError):
    """A received catalog breaks an acceptance rule; the last good catalog is kept."""

    code = "catalog_rejected"
    http_status = 422


class PeerError(FederationError):
    """Remote fault: a peer answered with an error, garbage, or too much data."""

    code = "peer_error"
    http_status = 502

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code)
        self.status = status


class PeerTimeoutError(PeerError, TimeoutError):
    """Remote fault: a peer did not answer, or not completely, within the time limit."""

    code = "peer_timeout"
    http_status = 504
