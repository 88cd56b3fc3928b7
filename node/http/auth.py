"""Admin authentication for operator routes: `Authorization: Bearer <token from keys/admin.token>`."""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from node.http.errors import ApiError


def new_admin_token() -> str:
    """A fresh random admin token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def check_admin(request: web.Request, expected: str) -> None:
    """Raise a 401 ApiError unless the request carries the admin bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "admin_auth_required", "this route needs 'Authorization: Bearer <admin token>'")
    if not expected or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(401, "bad_admin_token", "the admin token is not valid")
