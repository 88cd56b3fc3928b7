"""Signed peer requests: RFC 9421 HTTP message signatures with Ed25519, RFC 9530 body digests.

Profile (every `/fed/v1/*` request except the key document and the OpenAPI document):
- one signature, label `cpnode`, algorithm `ed25519`;
- covered: `@method`, `@target-uri`, `@authority`, `content-digest` (sha-256, also for empty
  bodies), `cpnode-node` (the caller's node name), `cpnode-to` (the callee's node name) and
  `authorization` whenever that header is sent;
- parameters `created`, `expires` (after `created`, at most 300 s later), `nonce`, `keyid`, `alg`;
- clock skew of ±60 s allowed; a nonce is accepted once per key while its signature is valid
  (the replay check is `federation.nonces`, shared by replicas through the database).

The verifier takes the target URI the server *knows* it serves (its own origin plus the path),
never the caller's Host header alone, and the signed `cpnode-to` names the destination node, so a
request signed for node B is refused at node C as a destination mismatch.
Structured-field parsing, signature bases and digests are the `http-message-signatures` library's;
this module adds the profile's policy on top. No I/O.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from nacl.signing import SigningKey, VerifyKey

from federation.errors import AuthError, MalformedRequestError
from federation.keys import key_id

LABEL = "cpnode"
NODE_HEADER = "Cpnode-Node"
TO_HEADER = "Cpnode-To"
REQUIRED_COMPONENTS = ("@method", "@target-uri", "@authority", "content-digest", "cpnode-node", "cpnode-to")
MAX_VALIDITY_S = 300
CLOCK_SKEW_S = 60
DEFAULT_VALIDITY_S = 60
_REQUIRED_PARAMS = ("created", "expires", "nonce", "keyid")
_SINGLE_HEADERS = (
    "signature-input",
    "signature",
    "authorization",
    "content-digest",
    "cpnode-node",
    "cpnode-to",
)


@dataclass(frozen=True)
class Identity:
    """Who signs: a node name and its current signing key (key id derived from the key)."""

    node: str
    key: SigningKey

    @property
    def kid(self) -> str:
        """The signing key's id, `ed25519:<16 chars>`."""
        return key_id(self.key.verify_key)


@dataclass(frozen=True)
class SignatureParams:
    """What the `Signature-Input` header claims, read before any key is looked up."""

    key_id: str
    node: str
    to: str
    created: int
    expires: int
    nonce: str
    covered: tuple[str, ...]


class _Message:
    """The request shape the library reads: method, absolute URL, header lines."""

    def __init__(self, method: str, url: str, headers: Any) -> None:
        self.method = method
        self.url = url
        self.headers = headers


class _HeaderLines:
    """Header field lines in wire order, as `items()` like a multidict."""

    def __init__(self, lines: Iterable[tuple[str, str]]) -> None:
        self._lines = list(lines)

    def items(self) -> list[tuple[str, str]]:
        return self._lines


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, private: Ed25519PrivateKey | None = None, public: Ed25519PublicKey | None = None):
        self._private = private
        self._public = public

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey | None:  # noqa: ARG002 (the library's resolver interface)
        return self._private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:  # noqa: ARG002 (as above)
        return self._public


class _Verifier(HTTPMessageVerifier):
    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        """Times are checked by `check_times` against the caller's clock, not the library's."""


def sign_request(
    identity: Identity,
    method: str,
    url: str,
    body: bytes,
    *,
    to: str,
    now_ts: int,
    headers: Mapping[str, str] | None = None,
    validity_s: int = DEFAULT_VALIDITY_S,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers to send: `headers` plus `Cpnode-Node`, `Cpnode-To`, `Content-Digest` and the signature."""
    message = _Message(method.upper(), url, {**(headers or {}), NODE_HEADER: identity.node, TO_HEADER: to})
    covered = [*REQUIRED_COMPONENTS[:3], "cpnode-node", "cpnode-to"]
    if any(name.lower() == "authorization" for name in message.headers):
        covered.append("authorization")
    private = Ed25519PrivateKey.from_private_bytes(bytes(identity.key))
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(private=private))
    signer.sign(
        message,
        key_id=identity.kid,
        created=datetime.datetime.fromtimestamp(now_ts, datetime.UTC),
        expires=datetime.datetime.fromtimestamp(now_ts + validity_s, datetime.UTC),
        nonce=nonce or secrets.token_urlsafe(18),
        label=LABEL,
        covered_component_ids=covered,
        body=body,
    )
    return dict(message.headers)


def _single(lines: list[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in lines if key.lower() == name]
    if len(values) > 1:
        raise AuthError(f"more than one {name} header", code="conflicting_headers")
    return values[0] if values else None


def read_signature_params(header_lines: Iterable[tuple[str, str]]) -> SignatureParams:
    """Parse and check the signature headers' shape; 401 when absent or ambiguous, 400 when garbled."""
    lines = list(header_lines)
    for name in _SINGLE_HEADERS:
        _single(lines, name)
    sig_input, signature = _single(lines, "signature-input"), _single(lines, "signature")
    if sig_input is None or signature is None:
        raise AuthError("request is not signed (Signature-Input and Signature required)", "missing_signature")
    try:
        inputs = http_sf.parse(sig_input.encode("latin-1"), tltype="dictionary", on_duplicate_key=_duplicate)
        signatures = http_sf.parse(
            signature.encode("latin-1"), tltype="dictionary", on_duplicate_key=_duplicate
        )
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError) as exc:
        raise MalformedRequestError(f"signature headers are not structured fields: {exc}") from None
    if not isinstance(inputs, dict) or not isinstance(signatures, dict):
        raise MalformedRequestError("signature headers must be dictionaries")
    if len(inputs) != 1 or len(signatures) != 1:
        raise AuthError("exactly one signature is accepted", code="multiple_signatures")
    if set(inputs) != {LABEL} or set(signatures) != {LABEL}:
        raise AuthError(f"the signature label must be {LABEL!r}", code="bad_signature")
    member: Any = inputs[LABEL]
    components, raw_params = member
    params: dict[str, Any] = dict(raw_params) if isinstance(raw_params, dict) else {}
    if not isinstance(components, list):
        raise MalformedRequestError("Signature-Input member must be an inner list")
    entries: list[Any] = components
    covered = tuple(str(item) for item, item_params in entries if not item_params)
    missing = [name for name in REQUIRED_COMPONENTS if name not in covered]
    if _single(lines, "authorization") is not None and "authorization" not in covered:
        missing.append("authorization")
    if missing:
        raise AuthError(f"signature does not cover {', '.join(missing)}", code="bad_signature")
    absent = [name for name in _REQUIRED_PARAMS if name not in params]
    if absent:
        raise AuthError(f"signature lacks parameter(s) {', '.join(absent)}", code="bad_signature")
    created, expires, nonce, kid = (params[name] for name in _REQUIRED_PARAMS)
    if type(created) is not int or type(expires) is not int or not isinstance(nonce, str):
        raise MalformedRequestError("created/expires must be integers and nonce a string")
    if not isinstance(kid, str) or not 8 <= len(nonce) <= 128:
        raise MalformedRequestError("keyid must be a string and nonce 8–128 characters")
    if params.get("alg", "ed25519") != "ed25519":
        raise AuthError("only alg=ed25519 is accepted", code="bad_signature")
    node = _single(lines, "cpnode-node") or ""
    to = _single(lines, "cpnode-to") or ""
    return SignatureParams(kid, node, to, created, expires, nonce, covered)


def _duplicate(key: str, context: str) -> None:
    raise MalformedRequestError(f"duplicate {context} key {key!r} in signature headers")


def check_times(
    params: SignatureParams, now_ts: int, skew_s: int = CLOCK_SKEW_S, max_validity_s: int = MAX_VALIDITY_S
) -> None:
    """Refuse signatures created too far from `now_ts`, expired, or valid for too long."""
    if params.expires <= params.created:
        raise AuthError("signature expires before it is created", code="bad_signature_time")
    if params.expires - params.created > max_validity_s:
        raise AuthError(f"signature validity exceeds {max_validity_s} s", code="bad_signature_time")
    if params.created > now_ts + skew_s:
        raise AuthError("signature is created in the future", code="bad_signature_time")
    if params.expires < now_ts - skew_s:
        raise AuthError("signature has expired", code="signature_expired")


def verify_request(
    method: str,
    url: str,
    header_lines: Iterable[tuple[str, str]],
    body: bytes,
    key: VerifyKey,
) -> None:
    """Verify the signature and body digest of a request whose target is `url`, or raise AuthError."""
    public = Ed25519PublicKey.from_public_bytes(bytes(key))
    verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(public=public))
    message = _Message(method.upper(), url, _HeaderLines(header_lines))
    try:
        verifier.verify(message, max_age=None, body=body, require_components=REQUIRED_COMPONENTS)
    except (InvalidSignature, HTTPMessageSignaturesException) as exc:
        text = str(exc) or "signature does not match the request"
        code = "digest_mismatch" if "digest" in text.lower() else "bad_signature"
        raise AuthError(f"request signature does not verify: {text}", code=code) from None
