"""Signed documents: canonical JSON objects carrying detached Ed25519 signatures.

A signed document is a JSON object with at least `type` and `issuer`, plus
`"signatures": {issuer: {key_id: base64url(signature)}}`. The signature covers the canonical bytes
of the whole object except the `signatures` member, so every other field — including ones a
reader does not know — is covered, and nothing outside the signed part is trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from federation import canonical
from federation.errors import DocumentError, SignatureError
from federation.keys import b64url, b64url_decode, key_id

SIGNATURES = "signatures"


def signing_bytes(document: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: the document without `signatures`."""
    return canonical.encode({k: v for k, v in document.items() if k != SIGNATURES})


def sign_document(document: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """Return a copy of `document` signed by `key` on behalf of `document['issuer']`."""
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise DocumentError("a signed document needs a non-empty string 'issuer'")
    signature = key.sign(signing_bytes(document)).signature
    existing = document.get(SIGNATURES, {})
    signatures = {name: dict(sigs) for name, sigs in existing.items()} if isinstance(existing, dict) else {}
    signatures.setdefault(issuer, {})[key_id(key.verify_key)] = b64url(signature)
    return {**document, SIGNATURES: signatures}


def load_document(data: bytes, max_depth: int = canonical.DEFAULT_MAX_DEPTH) -> tuple[dict[str, Any], bytes]:
    """Parse a signed document's bytes strictly; return it and the canonical bytes its signatures cover."""
    return canonical.decode_object(data, SIGNATURES, max_depth)


def verify_document(
    document: Mapping[str, Any],
    signer: str,
    keys: Mapping[str, VerifyKey],
    payload: bytes | None = None,
) -> str:
    """Check that `signer` signed `document` with one of `keys` (key id → key); return that key id.

    `payload` is the document's signing bytes when the caller already has them (`load_document`).
    """
    signatures = document.get(SIGNATURES)
    if not isinstance(signatures, dict) or not isinstance(signatures.get(signer), dict):
        raise SignatureError(f"document is not signed by {signer!r}", code="unsigned")
    if payload is None:
        payload = signing_bytes(document)
    for kid, encoded in signatures[signer].items():
        key = keys.get(kid)
        if key is None:
            continue
        if not isinstance(encoded, str):
            raise SignatureError("signature must be a string")
        try:
            key.verify(payload, b64url_decode(encoded))
        except (BadSignatureError, ValueError):
            raise SignatureError(f"signature by {signer!r} with {kid} does not verify") from None
        return str(kid)
    raise SignatureError(f"no signature by {signer!r} with a known key", code="unknown_key")
