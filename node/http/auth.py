"""Who calls the `/api/v1` routes: `Authorization: Bearer <token>` with the node's admin token
(`keys/admin.token`, the bootstrap admin), an operator user's token or a consumer token; or a
partner's consumer with its home node's assertion (node.accounts.federated). What each may call is
the permission table (node.http.permissions).

A user token is `cpu_<token id>_<secret>`, built like a consumer token.

A consumer token is `cpc_<token id>_<secret>`: the id (8 of A–Z a–z 0–9) names the stored row, the
secret (43 of the same, 256 bits) is known only to its holder; the node keeps the SHA-256 of the
secret. Neither part can hold `_`, so the token splits one way only. Everything here is pure: the
stored rows are in node.trading.tokens, and NodeContext.authenticate puts the two together.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from aiohttp import web

from node.http.errors import ApiError

CONSUMER_TOKEN_PREFIX = "cpc_"  # noqa: S105 - the fixed prefix of every token, not a secret
TOKEN_ID_LENGTH = 8
SECRET_LENGTH = 43  # 43 × log2(62) ≈ 256.03 bits
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_CONSUMER_TOKEN_RE = re.compile(
    rf"{CONSUMER_TOKEN_PREFIX}([A-Za-z0-9]{{{TOKEN_ID_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})"
)
TOKEN_ID_RE = re.compile(rf"[A-Za-z0-9]{{{TOKEN_ID_LENGTH}}}")


USER_TOKEN_PREFIX = "cpu_"  # noqa: S105 - the fixed prefix of every user token, not a secret
_USER_TOKEN_RE = re.compile(
    rf"{USER_TOKEN_PREFIX}([A-Za-z0-9]{{{TOKEN_ID_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})"
)


@dataclass(frozen=True)
class Principal:
    """Who made a request: the node's staff (`consumer` None: the bootstrap admin, or an operator
    user with its role) or one consumer (its own, or a partner's as `alice@a` with role federated)."""

    consumer: str | None = None
    role: str = "admin"
    user: str | None = None

    @property
    def is_admin(self) -> bool:
        """True for the node's staff (who may see every consumer's records); the permission table
        decides what each role may do."""
        return self.consumer is None

    @property
    def actor(self) -> str:
        """How audit events name this caller: `admin`, `user:NAME`, `consumer:ID`."""
        if self.user is not None:
            return f"user:{self.user}"
        return "admin" if self.consumer is None else f"consumer:{self.consumer}"


ADMIN = Principal()


def consumer_principal(consumer: str) -> Principal:
    """The principal of a consumer's own token."""
    return Principal(consumer=consumer, role="consumer")


def new_admin_token() -> str:
    """A fresh random admin token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_token_id() -> str:
    """A fresh consumer token id (8 random characters of A–Z a–z 0–9)."""
    return _random(TOKEN_ID_LENGTH)


def new_consumer_token(token_id: str) -> tuple[str, str]:
    """(the token to hand out, the SHA-256 hex of its secret to store) for a new token `token_id`."""
    secret = _random(SECRET_LENGTH)
    return f"{CONSUMER_TOKEN_PREFIX}{token_id}_{secret}", secret_digest(secret)


def parse_consumer_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed consumer token, else None."""
    match = _CONSUMER_TOKEN_RE.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def new_user_token(token_id: str) -> tuple[str, str]:
    """(the user token to hand out, the SHA-256 hex of its secret to store)."""
    secret = _random(SECRET_LENGTH)
    return f"{USER_TOKEN_PREFIX}{token_id}_{secret}", secret_digest(secret)


def parse_user_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed user token, else None."""
    match = _USER_TOKEN_RE.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def looks_like_user_token(token: str) -> bool:
    """Whether a bearer token is meant as an operator user's token (by its prefix)."""
    return token.startswith(USER_TOKEN_PREFIX)


def secret_digest(secret: str) -> str:
    """The SHA-256 hex of a token secret (the secret is random and 256 bits, so no slow hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_digest: str) -> bool:
    """Whether `secret` hashes to `stored_digest`, compared in constant time."""
    return hmac.compare_digest(secret_digest(secret).encode(), stored_digest.encode())


def looks_like_consumer_token(token: str) -> bool:
    """Whether a bearer token is meant as a consumer token (by its prefix; valid or not)."""
    return token.startswith(CONSUMER_TOKEN_PREFIX)


def bearer_token(request: web.Request) -> str:
    """The request's bearer token; a 401 `admin_auth_required` when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "admin_auth_required",
            "this route needs 'Authorization: Bearer <admin token>' (or a consumer token where allowed)",
        )
    return token


def is_admin_token(token: str, expected: str) -> bool:
    """Whether `token` is the admin token (never true when the node has none)."""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def bad_admin_token() -> ApiError:
    """The 401 for a bearer token that is neither the admin token nor meant as a consumer token."""
    return ApiError(401, "bad_admin_token", "the admin token is not valid")


def check_admin(request: web.Request, expected: str) -> None:
    """Raise a 401 unless the request carries the admin bearer token, a 403 `admin_only` when it
    carries a consumer token instead.

    The 403 needs no lookup: whether or not the consumer token is valid, the route is not for it, so
    admin routes cannot be used to test consumer tokens."""
    token = bearer_token(request)
    if is_admin_token(token, expected):
        return
    if looks_like_consumer_token(token):
        raise ApiError(403, "admin_only", "this route needs the admin token; consumer tokens are not allowed")
    raise bad_admin_token()
