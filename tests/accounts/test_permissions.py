"""The permission table (node.http.permissions) covers every `/api/v1` route a node mounts and gives each role what it should: the auditor reads only, the
operator manages no users, a partner's consumer only reads."""

from __future__ import annotations

from pathlib import Path

from node.http.permissions import TABLE, allowed_roles, is_public, known, may
from tests.support.nodes import make_node_dir, running_node


async def _mounted(tmp_path: Path) -> set[tuple[str, str]]:
    config = make_node_dir(tmp_path, "a", extra_toml="[scheduler]\nenabled = false\n")
    async with running_node(config) as server:
        runner = server._runner
        assert runner is not None
        return {
            (route.method, route.resource.canonical)
            for route in runner.app.router.routes()
            if route.resource is not None
            and route.resource.canonical.startswith("/api/v1/")
            and route.method not in ("HEAD", "OPTIONS")
        }


async def test_every_mounted_route_has_its_row(tmp_path: Path) -> None:
    """Each `/api/v1` route of a node with every role has a row in the permission table."""
    mounted = await _mounted(tmp_path)
    missing = sorted(key for key in mounted if not known(*key))
    assert not missing, f"routes without a row in node.http.permissions.TABLE: {missing}"
    assert ("POST", "/api/v1/accounts/{id}/suspend") in mounted


def test_the_auditor_only_reads_and_the_operator_manages_no_users() -> None:
    """No write route admits the auditor; no user route admits anyone but the admin; the federated
    role reaches only reads; an unknown route is the admin's alone."""
    reads_by_post = {("POST", "/api/v1/ledger/bundles/verify")}  # a POST to carry a file; keeps nothing
    for (method, route), roles in TABLE.items():
        if method != "GET" and (method, route) not in reads_by_post:
            assert "auditor" not in roles, (method, route)
            assert "federated" not in roles, (method, route)
        if route.startswith("/api/v1/users"):
            assert roles == {"admin"}, (method, route)
    assert may("operator", "POST", "/api/v1/accounts/{id}/suspend")
    assert not may("operator", "POST", "/api/v1/users")
    assert may("auditor", "GET", "/api/v1/account-events")
    assert not may("consumer", "GET", "/api/v1/account-events")
    assert may("federated", "GET", "/api/v1/tasks/{id}/logs")
    assert not may("federated", "POST", "/api/v1/tasks")
    assert allowed_roles("POST", "/api/v1/not-a-route") == {"admin"}
    assert is_public("POST", "/api/v1/plugins/{name}/heartbeat")
    assert not is_public("GET", "/api/v1/accounts")


def test_route_names_match_what_aiohttp_calls_them() -> None:
    """A route with a regex parameter is named without it, as the table writes it."""
    from aiohttp import web

    app = web.Application()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/tasks/{id}/outputs/{path:.+}", handler)
    [route] = [r for r in app.router.routes() if r.method == "GET"]
    assert route.resource is not None
    assert route.resource.canonical == "/api/v1/tasks/{id}/outputs/{path}"
    assert known("GET", route.resource.canonical)
