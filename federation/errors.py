"""The federation error tree: one root, local-vs-remote fault explicit, stdlib bases kept."""

from __future__ import annotations


class FederationError(Exception):
    """Root of every error raised by `federation`; `code` is machine-readable."""

    code = "federation_error"


class DocumentError(FederationError, ValueError):
    """A document or body is malformed: not canonical JSON, out of limits, wrong shape."""

    code = "bad_document"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class SignatureError(FederationError, ValueError):
    """A signature is missing, malformed, made by an unknown or invalid key, or does not verify."""

    code = "bad_signature"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class KeyFormatError(FederationError, ValueError):
    """A key or key id is not in the `ed25519:...` form."""

    code = "bad_key"
