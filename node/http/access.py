"""The middleware that checks every `/api/v1` request against the permission table
(node.http.permissions) before its handler runs: who calls (NodeContext.authenticate) and whether
that role may call the route. A denied request changes nothing.

A consumer token on a route no consumer may call is answered 403 `admin_only` without looking the
token up (as before roles existed), so staff routes cannot be used to test consumer tokens; a staff
user whose role may not call the route gets 403 `forbidden_role`.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from node.context import CTX
from node.http.auth import looks_like_consumer_token
from node.http.errors import ApiError
from node.http.permissions import allowed_roles, is_public

API_PREFIX = "/api/v1/"
_CONSUMER_ROLES = frozenset({"consumer", "federated"})


def route_of(request: web.Request) -> str | None:
    """The route `request` matched, as aiohttp names it (`/api/v1/tasks/{id}`); None if none."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else None


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and authorize an `/api/v1` request by the permission table."""
    route = route_of(request)
    if not request.path.startswith(API_PREFIX) or route is None or is_public(request.method, route):
        return await handler(request)
    roles = allowed_roles(request.method, route)
    if not roles & _CONSUMER_ROLES:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and looks_like_consumer_token(token.strip()):
            raise ApiError(
                403, "admin_only", "this route needs the node's staff; consumer tokens are not allowed"
            )
    principal = await request.app[CTX].authenticate(request)
    if principal.role not in roles:
        if principal.role in _CONSUMER_ROLES:
            raise ApiError(403, "admin_only", f"a {principal.role} account may not {request.method} {route}")
        raise ApiError(
            403,
            "forbidden_role",
            f"role {principal.role} may not {request.method} {route} (allowed: {', '.join(sorted(roles))})",
        )
    return await handler(request)
