"""Signed peer requests: RFC 9421 HTTP message signatures with Ed25519, RFC 9530 body digests.

Profile (every `/fed/v1/*` request except the key document and the OpenAPI document):
- one signature, label `cpnode`, algorithm `ed25519`;
- covered: `@method`, `@target-uri`, `@authority`, `content-digest` (sha-256, also for empty
  bodies), `cpnode-node` (the caller's node name), `cpnode-to` (the callee's node name) and
  `authorization` whenever that header is sent; other components only as `federation.sigbase`
  supports them (no component parameters);
- parameters `created`, `expires` (after `created`, at most 300 s later), `nonce`, `keyid`, `alg`
  (and `tag`; nothing else);
- clock skew of ±60 s allowed; a nonce is accepted once per key while its signature is valid
  (the replay check is `federation.nonces`, shared by replicas through the database).

The verifier takes the target URI the server *knows* it serves (its own origin plus the path),
never the caller's Host header alone, and the signed `cpnode-to` names the destination node, so a
request signed for node B is refused at node C as a destination mismatch.
The two signature headers are parsed as structured fields by `http_sf`; signature bases and
digests are `federation.sigbase`'s. No I/O.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import http_sf
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from federation import sigbase
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
_FAST_INPUT = re.compile(
    r'cpnode=\(((?:"[a-z0-9@._-]+"(?: "[a-z0-9@._-]+")*)?)\)((?:;[a-z][a-z0-9_.-]*=(?:0|-?[1-9][0-9]{0,14}|"[ !#-\[\]-~]*"))*)'
)
_FAST_PARAM = re.compile(r';([a-z][a-z0-9_.-]*)=(0|-?[1-9][0-9]{0,14}|"[ !#-\[\]-~]*")')
_FAST_SIGNATURE = re.compile(r"cpnode=:([A-Za-z0-9+/]{86}==):")
_SET_BY_SIGNER = frozenset({"cpnode-node", "cpnode-to", "content-digest", "signature-input", "signature"})
_PARAM_TYPES: dict[str, type] = {
    "created": int,
    "expires": int,
    "nonce": str,
    "keyid": str,
    "alg": str,
    "tag": str,
}
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

    @cached_property
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
    signature_params: str = field(default="", repr=False)
    signature: bytes = field(default=b"", repr=False)
    fields: Mapping[str, str] = field(default_factory=dict, repr=False)


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
    out = {name: value for name, value in (headers or {}).items() if name.lower() not in _SET_BY_SIGNER}
    digest = sigbase.content_digest(body)
    out[NODE_HEADER], out[TO_HEADER], out["Content-Digest"] = identity.node, to, digest
    fields = {"cpnode-node": identity.node, "cpnode-to": to, "content-digest": digest}
    covered = [*REQUIRED_COMPONENTS[:3], "cpnode-node", "cpnode-to"]
    authorization = [value for name, value in out.items() if name.lower() == "authorization"]
    if authorization:
        fields["authorization"] = ", ".join(value.strip(" \t") for value in authorization)
        covered.append("authorization")
    covered.append("content-digest")
    params: list[tuple[str, int | str]] = [
        ("created", now_ts),
        ("keyid", identity.kid),
        ("alg", "ed25519"),
        ("expires", now_ts + validity_s),
        ("nonce", nonce or secrets.token_urlsafe(18)),
    ]
    signature_params = sigbase.serialize_params(covered, params)
    values = sigbase.resolve(covered, method.upper(), url, fields)
    signature = identity.key.sign(sigbase.signature_base(values, signature_params)).signature
    out["Signature-Input"] = f"{LABEL}={signature_params}"
    out["Signature"] = f"{LABEL}=:{base64.b64encode(signature).decode('ascii')}:"
    return out


def _single(grouped: Mapping[str, list[str]], name: str) -> str | None:
    values = grouped.get(name, ())
    if len(values) > 1:
        raise AuthError(f"more than one {name} header", code="conflicting_headers")
    return values[0] if values else None


def _parse_fast(sig_input: str, signature: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """The two headers parsed as `http_sf` would, when they are in the plain form our signer writes
    (quoted lower-case components, integer and plain-string parameters, once each), with the
    member's text (then its own serialization); else None."""
    match, sig = _FAST_INPUT.fullmatch(sig_input), _FAST_SIGNATURE.fullmatch(signature)
    if match is None or sig is None:
        return None
    components: list[tuple[str, dict[str, Any]]] = (
        [(item, {}) for item in match[1][1:-1].split('" "')] if match[1] else []
    )
    pairs = [
        (name, int(value) if value[0] != '"' else value[1:-1])
        for name, value in _FAST_PARAM.findall(match[2])
    ]
    params = dict(pairs)
    if len(params) != len(pairs):
        return None
    return {LABEL: (components, params)}, {LABEL: (base64.b64decode(sig[1]), {})}, sig_input[len(LABEL) + 1 :]


def _parse_sf(sig_input: str, signature: str) -> tuple[Any, Any, None]:
    try:
        inputs = http_sf.parse(sig_input.encode("latin-1"), tltype="dictionary", on_duplicate_key=_duplicate)
        signatures = http_sf.parse(
            signature.encode("latin-1"), tltype="dictionary", on_duplicate_key=_duplicate
        )
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError) as exc:
        raise MalformedRequestError(f"signature headers are not structured fields: {exc}") from None
    if not isinstance(inputs, dict) or not isinstance(signatures, dict):
        raise MalformedRequestError("signature headers must be dictionaries")
    return inputs, signatures, None


def read_signature_params(header_lines: Iterable[tuple[str, str]]) -> SignatureParams:  # noqa: C901 (one check per header rule)
    """Parse and check the signature headers' shape; 401 when absent or ambiguous, 400 when garbled."""
    grouped: dict[str, list[str]] = {}
    for name, value in header_lines:
        grouped.setdefault(name.lower(), []).append(value)
    for name in _SINGLE_HEADERS:
        _single(grouped, name)
    sig_input, signature = _single(grouped, "signature-input"), _single(grouped, "signature")
    if sig_input is None or signature is None:
        raise AuthError("request is not signed (Signature-Input and Signature required)", "missing_signature")
    inputs, signatures, plain = _parse_fast(sig_input, signature) or _parse_sf(sig_input, signature)
    if len(inputs) != 1 or len(signatures) != 1:
        raise AuthError("exactly one signature is accepted", code="multiple_signatures")
    if set(inputs) != {LABEL} or set(signatures) != {LABEL}:
        raise AuthError(f"the signature label must be {LABEL!r}", code="bad_signature")
    member: Any = inputs[LABEL]
    components, raw_params = member
    if not isinstance(components, list):
        raise MalformedRequestError("Signature-Input member must be an inner list")
    params: dict[str, Any] = dict(raw_params) if isinstance(raw_params, dict) else {}
    covered = _covered(components)
    missing = [name for name in REQUIRED_COMPONENTS if name not in covered]
    if _single(grouped, "authorization") is not None and "authorization" not in covered:
        missing.append("authorization")
    if missing:
        raise AuthError(f"signature does not cover {', '.join(missing)}", code="bad_signature")
    absent = [name for name in _REQUIRED_PARAMS if name not in params]
    if absent:
        raise AuthError(f"signature lacks parameter(s) {', '.join(absent)}", code="bad_signature")
    for name, value in params.items():
        kind = _PARAM_TYPES.get(name)
        if kind is None:
            raise AuthError(f"signature parameter {name!r} is not accepted", code="bad_signature")
        if type(value) is not kind:
            raise MalformedRequestError(f"signature parameter {name!r} must be a {kind.__name__}")
    created, expires, nonce, kid = (params[name] for name in _REQUIRED_PARAMS)
    if not 8 <= len(nonce) <= 128:
        raise MalformedRequestError("nonce must be 8–128 characters")
    if params.get("alg", "ed25519") != "ed25519":
        raise AuthError("only alg=ed25519 is accepted", code="bad_signature")
    raw_signature = signatures[LABEL][0]
    if type(raw_signature) is not bytes or len(raw_signature) != 64:
        raise AuthError("the signature must be a byte sequence of 64 bytes", code="bad_signature")
    node = _single(grouped, "cpnode-node") or ""
    to = _single(grouped, "cpnode-to") or ""
    # The plain form is already the serialization the signature base needs; others are re-serialized.
    serialized = plain or sigbase.serialize_params(covered, list(params.items()))
    fields = {
        name: ", ".join(value.strip(" \t") for value in grouped[name]) for name in covered if name in grouped
    }
    return SignatureParams(kid, node, to, created, expires, nonce, covered, serialized, raw_signature, fields)


def _covered(components: list[Any]) -> tuple[str, ...]:
    covered: list[str] = []
    for item, item_params in components:
        if type(item) is not str or item != item.lower():
            raise AuthError("covered components must be lower-case strings", code="bad_signature")
        if item_params:
            raise AuthError(f"component parameters on {item!r} are not accepted", code="bad_signature")
        if item in covered:
            raise AuthError(f"component {item!r} is covered twice", code="bad_signature")
        covered.append(item)
    return tuple(covered)


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
    params: SignatureParams | None = None,
) -> None:
    """Verify the signature and body digest of a request whose target is `url`, or raise AuthError.

    `params` is what `read_signature_params` read from these header lines, when the caller has it
    (the covered fields' values are then taken from it).
    """
    if params is None:
        params = read_signature_params(header_lines)
    try:
        values = sigbase.resolve(params.covered, method.upper(), url, params.fields)
    except MalformedRequestError as exc:
        raise AuthError(f"request signature does not verify: {exc}", code="bad_signature") from None
    try:
        key.verify(sigbase.signature_base(values, params.signature_params), params.signature)
    except BadSignatureError:
        raise AuthError(
            "request signature does not verify: signature does not match the request", code="bad_signature"
        ) from None
    sigbase.check_digest(params.fields["content-digest"], body)
