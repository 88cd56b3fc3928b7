"""Session tokens issued at login: EdDSA JWTs (pyjwt) bound to the caller's key.

Claims: `iss` and `aud` are the issuing node (tokens are only good at the node that issued them),
`sub` is the partner that logged in, `cnf.kid` the partner's key id (RFC 7800 style binding),
`iat`, `exp` (10 minutes after issue), `jti`. Header: `alg` EdDSA, `typ` below, `kid` of the
issuing key; any other header member, `crit` included, is refused. A token never authorises a
request on its own: the request signature is checked too and must be made with `cnf.kid`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.signing import VerifyKey

from federation.errors import AuthError
from federation.httpsig import Identity

TOKEN_TYPE = "cpnode-session+jwt"  # noqa: S105 (a media type, not a secret)
SESSION_TTL_S = 600
LEEWAY_S = 30
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti", "cnf"]


@dataclass(frozen=True)
class SessionClaims:
    """A verified token's meaning: which partner, bound to which of its keys, until when."""

    partner: str
    partner_kid: str
    token_id: str
    expires_ts: int


def issue_token(
    issuer: Identity, partner: str, partner_kid: str, now_ts: int, ttl_s: int = SESSION_TTL_S
) -> tuple[str, int]:
    """A signed session token for `partner` (key `partner_kid`) at `issuer`; returns it and its expiry."""
    expires_ts = now_ts + ttl_s
    claims = {
        "iss": issuer.node,
        "aud": issuer.node,
        "sub": partner,
        "cnf": {"kid": partner_kid},
        "iat": now_ts,
        "exp": expires_ts,
        "jti": secrets.token_urlsafe(16),
    }
    private = Ed25519PrivateKey.from_private_bytes(bytes(issuer.key))
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"typ": TOKEN_TYPE, "kid": issuer.kid})
    return token, expires_ts


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthError(f"session token is malformed: {exc}", code="bad_token") from None
    extra = set(header) - _ALLOWED_HEADER
    if extra:
        raise AuthError(f"session token header has unsupported member(s) {sorted(extra)}", code="bad_token")
    if header.get("alg") != "EdDSA":
        raise AuthError("session token must use alg EdDSA", code="bad_token")
    if header.get("typ") != TOKEN_TYPE:
        raise AuthError(f"session token must have typ {TOKEN_TYPE!r}", code="bad_token")
    return header


# Tokens whose signature and claims checked out, by their text: a partner sends the same token with
# every request of its session, and parsing and verifying it again each time cost more than the
# rest of authenticating. What a token says never changes; whether its signing key is still one of
# ours and whether it has expired are checked again at every use.
_verified: dict[str, tuple[str, str, bytes, SessionClaims]] = {}
_MAX_VERIFIED = 4096


def verify_token(token: str, node: str, keys: Mapping[str, VerifyKey], now_ts: int) -> SessionClaims:
    """Check a token this node (`node`, signing keys `keys` by id) issued; AuthError names the fault."""
    known = _verified.get(token)
    if known is not None:
        issuer, kid, key_bytes, session = known
        key = keys.get(kid)
        if issuer == node and key is not None and bytes(key) == key_bytes:
            if session.expires_ts + LEEWAY_S < now_ts:
                raise AuthError("session token has expired", code="token_expired")
            return session
    header = _header(token)
    kid = str(header.get("kid"))
    key = keys.get(kid)
    if key is None:
        raise AuthError("session token is signed by an unknown key", code="bad_token")
    session = _verify_signed(token, node, key, now_ts)
    if len(_verified) >= _MAX_VERIFIED:
        _verified.clear()
    _verified[token] = (node, kid, bytes(key), session)
    return session


def _verify_signed(token: str, node: str, key: VerifyKey, now_ts: int) -> SessionClaims:
    public = Ed25519PublicKey.from_public_bytes(bytes(key))
    try:
        claims = jwt.decode(
            token,
            public,
            algorithms=["EdDSA"],
            audience=node,
            issuer=node,
            # Time claims are checked below against the caller's clock.
            options={
                "require": _REQUIRED_CLAIMS,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"session token rejected: {exc}", code="bad_token") from None
    expires_ts, cnf = claims["exp"], claims["cnf"]
    if type(expires_ts) is not int or expires_ts + LEEWAY_S < now_ts:
        raise AuthError("session token has expired", code="token_expired")
    if not isinstance(cnf, dict) or not isinstance(cnf.get("kid"), str):
        raise AuthError("session token is not bound to a key", code="bad_token")
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        raise AuthError("session token sub and jti must be strings", code="bad_token")
    return SessionClaims(claims["sub"], cnf["kid"], claims["jti"], expires_ts)


def bearer(header_value: str | None) -> str | None:
    """The token in an `Authorization: Bearer ...` value, None when absent; AuthError if not Bearer."""
    if header_value is None:
        return None
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <session token>'", code="bad_token")
    return token.strip()
