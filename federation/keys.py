"""Node identity: Ed25519 keys (PyNaCl), their textual forms, and PEM storage.

Forms (all URL-safe base64 without padding):
- public key  `ed25519:<43 chars>`  — what operators pin (`--key`) and auditors verify with;
- key id      `ed25519:<16 chars>`  — the first 12 bytes of SHA-256(public key), names a key in
  signatures and documents;
- fingerprint `SHA256:<43 chars>`   — SHA-256(public key), shown for out-of-band comparison.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey, VerifyKey

from federation.errors import KeyFormatError

PREFIX = "ed25519:"
KEY_ID_CHARS = 16


def b64url(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of `b64url`; raises ValueError on bad input, including a non-canonical spelling (a
    last character whose unused bits are set), so one value has exactly one text."""
    if not text.isascii() or any(ch in text for ch in "+/= \n"):
        raise ValueError("not URL-safe base64 without padding")
    value = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(value) != text:
        raise ValueError("not the canonical URL-safe base64 of its value")
    return value


def generate_signing_key() -> SigningKey:
    """A fresh random Ed25519 signing key."""
    return SigningKey.generate()


def public_key_text(key: VerifyKey) -> str:
    """`ed25519:<base64url of the 32-byte public key>`."""
    return PREFIX + b64url(bytes(key))


# Pinned and learned keys are parsed on every signed request and document: the same few texts.
@functools.lru_cache(maxsize=1024)
def parse_public_key(text: str) -> VerifyKey:
    """Parse `ed25519:<base64url>` into a verify key, or raise KeyFormatError."""
    if not text.startswith(PREFIX):
        raise KeyFormatError(f"public key must start with {PREFIX!r}")
    try:
        raw = b64url_decode(text[len(PREFIX) :])
    except ValueError:
        raise KeyFormatError("public key is not base64url") from None
    if len(raw) != 32:
        raise KeyFormatError(f"public key must be 32 bytes, got {len(raw)}")
    return VerifyKey(raw)


@functools.lru_cache(maxsize=1024)
def key_id(key: VerifyKey) -> str:
    """`ed25519:<16 chars>` naming this public key."""
    return PREFIX + b64url(hashlib.sha256(bytes(key)).digest())[:KEY_ID_CHARS]


def fingerprint(key: VerifyKey) -> str:
    """`SHA256:<base64url of SHA-256(public key)>` for comparing keys out of band."""
    return "SHA256:" + b64url(hashlib.sha256(bytes(key)).digest())


def private_key_pem(key: SigningKey) -> bytes:
    """The signing key as unencrypted PKCS#8 PEM (readable by OpenSSL)."""
    private = Ed25519PrivateKey.from_private_bytes(bytes(key))
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_pem(data: bytes) -> SigningKey:
    """Read a PKCS#8 PEM Ed25519 key, or raise KeyFormatError saying why."""
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"not a readable PEM private key: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFormatError("key is not an Ed25519 key")
    return SigningKey(private.private_bytes_raw())
