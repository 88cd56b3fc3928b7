"""RFC 9421 signature bases and RFC 9530 content digests, for the subset of HTTP message signatures
the peer profile uses (`federation.httpsig`). Pure functions; no I/O.

Supported covered components: the derived components `@method`, `@target-uri`, `@authority`,
`@scheme`, `@path`, `@query` and `@request-target` of a request, and HTTP fields by their
lower-case name, all without component parameters (`sf`, `key`, `bs`, `req`, `tr` and
`@query-param` are refused). Signature parameters are integers and strings. For these, the
bases built here are byte-identical to those of the `http-message-signatures` library, which the
tests check in both directions; building them directly skips that library's general machinery,
which cost several times the Ed25519 operations themselves.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import http_sf

from federation.errors import AuthError, MalformedRequestError

DERIVED = frozenset({"@method", "@target-uri", "@authority", "@scheme", "@path", "@query", "@request-target"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?:[^/?#@\[\]]*@)?"
    r"(?P<host>\[[0-9A-Za-z:.%\-_~]+\]|[^:/?#@\[\]]+)(?::(?P<port>[0-9]*))?"
    r"(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?(?:#.*)?"
)
_FIELD_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
_DIGEST_SIZES = {"sha-256": 32, "sha-512": 64}
_HASHES = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_BASE_VALUE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True)
class Target:
    """The parts of a request's absolute URL, spelled as given."""

    scheme: str
    host: str
    port: str | None
    path: str
    query: str | None


@functools.lru_cache(maxsize=1024)
def split_target(url: str) -> Target:
    """Split an absolute http(s) URL; MalformedRequestError if it is not printable ASCII or not a URL.

    Cached: a node signs and verifies requests for the same few URLs over and over.
    """
    if not url.isascii() or not url.isprintable() or " " in url:
        raise MalformedRequestError("target URL must be printable ASCII without spaces")
    match = _URL.fullmatch(url)
    if match is None:
        raise MalformedRequestError(f"target URL {url[:200]!r} is not an absolute URL with a host")
    return Target(match["scheme"], match["host"], match["port"], match["path"] or "", match["query"])


def derived_value(component: str, method: str, target: Target) -> str:
    """The value of a derived component (one of `DERIVED`) for a request."""
    path = target.path or "/"
    query = "" if target.query is None else "?" + target.query
    if component == "@method":
        return method
    if component == "@target-uri":
        spelled = "" if target.port is None else ":" + target.port
        return (
            f"{target.scheme}://{target.host}{spelled}{target.path if method == 'OPTIONS' else path}{query}"
        )
    if component == "@authority":
        port = target.port
        if not port or port.lstrip("0") == _DEFAULT_PORTS.get(target.scheme.lower()):
            return target.host.lower()
        return f"{target.host.lower()}:{port}"
    if component == "@scheme":
        return target.scheme.lower()
    if component == "@path":
        return path
    if component == "@query":
        return "?" + (target.query or "")
    if component == "@request-target":
        return path + query
    raise AuthError(f"covered component {component!r} is not supported", code="bad_signature")


def serialize_params(components: Sequence[str], params: Sequence[tuple[str, int | str]]) -> str:
    """The `@signature-params` value: the covered components as an inner list, then the parameters."""
    tail = "".join(
        f";{name}={value if type(value) is int else _sf_string(str(value))}" for name, value in params
    )
    return _inner_list(tuple(components)) + tail


@functools.lru_cache(maxsize=64)
def _inner_list(components: tuple[str, ...]) -> str:
    # Cached: signers and verifiers cover the same few component lists.
    return "(" + " ".join(_sf_string(component) for component in components) + ")"


def _sf_string(value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise MalformedRequestError("signature strings must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signature_base(values: Iterable[tuple[str, str]], signature_params: str) -> bytes:
    """The bytes a signature covers: one `"name": value` line per component, then `@signature-params`."""
    lines = []
    for component, value in values:
        if _BASE_VALUE.fullmatch(value) is None:
            raise AuthError(f"value of {component!r} is not printable ASCII", code="bad_signature")
        if component.startswith("@") and value != value.strip(" "):
            raise AuthError(f"value of {component!r} has surrounding spaces", code="bad_signature")
        lines.append(f'"{component}": {value}')
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines).encode("ascii")


def resolve(
    components: Sequence[str], method: str, url: str, fields: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(component, value) for each covered component of a request; AuthError if one is absent."""
    target: Target | None = None
    values = []
    for component in components:
        if component.startswith("@"):
            if component not in DERIVED:
                raise AuthError(f"covered component {component!r} is not supported", code="bad_signature")
            target = target or split_target(url)
            values.append((component, derived_value(component, method, target)))
        else:
            if _FIELD_NAME.fullmatch(component) is None:
                raise AuthError(f"covered field name {component!r} is not valid", code="bad_signature")
            value = fields.get(component)
            if value is None:
                raise AuthError(f"covered field {component!r} is not in the request", code="bad_signature")
            values.append((component, value))
    return values


def content_digest(body: bytes) -> str:
    """The `Content-Digest` value of `body` (sha-256)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def check_digest(value: str, body: bytes) -> None:
    """Check a `Content-Digest` value against `body`: every member (sha-256 or sha-512) must match."""
    match = _DIGEST.fullmatch(value)
    members = {"sha-256": base64.b64decode(match[1])} if match is not None else _parse_digest(value)
    for algorithm, digest in members.items():
        if not hmac.compare_digest(digest, _HASHES[algorithm](body).digest()):
            raise AuthError("Content-Digest does not match the body", code="digest_mismatch")


def _parse_digest(value: str) -> dict[str, bytes]:
    try:
        parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary", on_duplicate_key=_duplicate)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise AuthError("Content-Digest is malformed", code="digest_mismatch") from None
    if not isinstance(parsed, dict) or not parsed:
        raise AuthError("Content-Digest holds no digest", code="digest_mismatch")
    members: dict[str, bytes] = {}
    entries: dict[str, Any] = parsed
    for algorithm, member in entries.items():
        digest = member[0] if isinstance(member, tuple) else None
        if algorithm not in _DIGEST_SIZES or type(digest) is not bytes:
            raise AuthError(
                f"Content-Digest algorithm {algorithm!r} is not supported", code="digest_mismatch"
            )
        if len(digest) != _DIGEST_SIZES[algorithm]:
            raise AuthError(f"Content-Digest {algorithm} has the wrong length", code="digest_mismatch")
        members[algorithm] = digest
    return members


def _duplicate(key: str, context: str) -> None:
    raise ValueError(f"duplicate {context} key {key!r}")
