"""The console on a real node, without a browser: every page renders for the operator; a consumer
sees only its own things and no operator page; forms without their CSRF token change nothing;
sessions are HttpOnly, SameSite=Strict cookies; and the console can be moved or switched off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.config import load_settings
from node.console.render import CONTENT_SECURITY_POLICY
from node.db import open_database
from node.money import format_money
from tests.statements.support import ALICE, BOB, NOVEMBER_CLOSING, fill_november
from tests.support.console import LOOPBACK_PARTNERS, Browserless, problem
from tests.support.nodes import make_node_dir, running_node
from tests.support.tasks import Node, pool_node, python_task

OPERATOR_PAGES = ["", "federation", "pools", "orders", "migrations", "ledger", "plan", "offers"]


@pytest.fixture(name="node")
async def fixture_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node with a local pool, alice funded, bob funded, and one finished task of alice's."""
    async with pool_node(tmp_path, extra_toml=LOOPBACK_PARTNERS) as node:
        await node.call("POST", "/api/v1/consumers", {"id": "bob"})
        await node.call("POST", "/api/v1/consumers/bob/deposits", {"amount": 100_000, "id": "b1"})
        yield node


async def _token(node: Node, consumer: str) -> str:
    status, body = await node.call("POST", f"/api/v1/consumers/{consumer}/tokens")
    assert status == 201, body
    return str(body["token"])


async def _visitor(node: Node, token: str) -> Browserless:
    visitor = Browserless(node.server.url)
    await visitor.sign_in(token)
    return visitor


async def test_every_operator_page_renders_with_the_security_headers(node: Node) -> None:
    """Signed in with the admin token, each operator page answers 200 with the strict CSP."""
    assert node.server.ctx is not None
    task = await node.submit(python_task("print('hello')"))
    await node.wait(task["id"])
    task = await node.task(task["id"])
    operator = await _visitor(node, node.server.ctx.admin_token)
    try:
        for page in [*OPERATOR_PAGES, f"orders/{task['order_id']}", f"tasks/{task['id']}"]:
            status, html, response = await operator.page("/" + page)
            assert status == 200, (page, problem(html))
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "Sign out" in html
        _, html, _ = await operator.page("/orders")
        assert task["order_id"] in html
        assert "36.00 CNY" in html  # the order's hold, in major units with its currency
    finally:
        await operator.close()


async def test_the_session_cookie_is_httponly_and_samesite_strict(node: Node) -> None:
    """The cookie that holds the session cannot be read by scripts nor sent by other sites."""
    assert node.server.ctx is not None
    visitor = Browserless(node.server.url)
    try:
        await visitor.page("/signin")
        async with visitor.http.post(
            "/signin",
            data={"csrf": visitor.csrf, "token": node.server.ctx.admin_token},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
            cookie = response.cookies["cpnode_console"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert node.server.ctx.admin_token not in cookie.value
    finally:
        await visitor.close()


async def test_a_bad_token_does_not_sign_in(node: Node) -> None:
    """A wrong admin token or a revoked consumer token is refused at sign-in and gives no session."""
    _, body = await node.call("POST", "/api/v1/consumers/alice/tokens")
    token, token_id = body["token"], body["id"]
    await node.call("POST", f"/api/v1/consumers/alice/tokens/{token_id}/revoke")
    for bad in ("not-the-admin-token", token):
        visitor = Browserless(node.server.url)
        try:
            assert await visitor.sign_in(bad) == 401
            _, _, response = await visitor.page("/")
            assert "/signin" in str(response.url)
        finally:
            await visitor.close()


async def test_signing_in_without_the_form_token_is_refused(node: Node) -> None:
    """The sign-in form is a form too: without its CSRF value it is refused."""
    assert node.server.ctx is not None
    visitor = Browserless(node.server.url)
    try:
        await visitor.page("/signin")
        status, html = await visitor.post("/signin", {"token": node.server.ctx.admin_token}, csrf=False)
        assert status == 403
        assert "CSRF" in problem(html)
    finally:
        await visitor.close()


async def test_a_consumer_reaches_no_operator_page_and_nothing_of_another_consumer(node: Node) -> None:
    """alice's session: operator pages answer 403; bob's order and task answer 404; her own list
    shows none of bob's orders."""
    bobs = await node.submit(python_task("print('bob')"), consumer="bob")
    bobs = await node.wait(bobs["id"])
    alice = await _visitor(node, await _token(node, "alice"))
    try:
        for page in ("federation", "pools", "migrations", "ledger", "plan"):
            status, html, _ = await alice.page("/" + page)
            assert status == 403, page
            assert "operator" in problem(html)
        for page in (f"orders/{bobs['order_id']}", f"tasks/{bobs['id']}"):
            status, _, _ = await alice.page("/" + page)
            assert status == 404, page
        status, html, _ = await alice.page("/orders")
        assert status == 200
        assert bobs["order_id"] not in html
        assert "Balance" in (await alice.page("/"))[1]
        # A consumer cannot stream another consumer's task through the console either.
        async with alice.http.get(f"/tasks/{bobs['id']}/events") as response:
            assert response.status == 404
    finally:
        await alice.close()


async def test_a_form_without_its_csrf_token_changes_nothing(node: Node) -> None:
    """Pinning a partner without the CSRF token (or with another session's) is refused, and no
    partner is pinned; with the token it is pinned."""
    assert node.server.ctx is not None
    key = node.server.ctx.identity.public_key
    operator = await _visitor(node, node.server.ctx.admin_token)
    other = await _visitor(node, node.server.ctx.admin_token)
    form = {"name": "peer", "urls": "http://127.0.0.1:9/", "public_key": key, "credit_limit": "10"}
    try:
        await operator.page("/federation")
        status, html = await operator.post("/federation/partners", form, csrf=False)
        assert status == 403
        operator_csrf = operator.csrf
        await other.page("/federation")
        operator.csrf = other.csrf
        status, _ = await operator.post("/federation/partners", form)
        assert status == 403
        _, listing = await node.call("GET", "/api/v1/partners")
        assert listing["partners"] == []
        operator.csrf = operator_csrf
        status, html = await operator.post("/federation/partners", form)
        assert status == 200, problem(html)
        _, listing = await node.call("GET", "/api/v1/partners")
        assert [p["name"] for p in listing["partners"]] == ["peer"]
        assert listing["partners"][0]["agreement"]["credit_limit"] == 1000
    finally:
        await operator.close()
        await other.close()


async def test_signed_out_visitors_are_sent_to_sign_in(node: Node) -> None:
    """Without a session every page redirects to the sign-in page, which says where it came from."""
    visitor = Browserless(node.server.url)
    try:
        status, html, response = await visitor.page("/ledger")
        assert status == 200
        assert response.url.path == "/signin"
        assert response.url.query["next"] == "/ledger"
        assert 'type="password"' in html
    finally:
        await visitor.close()


async def test_the_console_moves_or_switches_off_by_configuration(tmp_path: Path) -> None:
    """`[console] path` serves it elsewhere; `[console] enabled = false` leaves `/` to the API's 404."""
    moved = make_node_dir(
        tmp_path, "moved", extra_toml='[console]\npath = "/console"\n[scheduler]\nenabled = false\n'
    )
    off = make_node_dir(
        tmp_path, "off", extra_toml="[console]\nenabled = false\n[scheduler]\nenabled = false\n"
    )
    async with running_node(moved) as server:
        assert server.ctx is not None
        visitor = Browserless(server.url)
        try:
            await visitor.sign_in(server.ctx.admin_token, prefix="/console/")
            status, html, _ = await visitor.page("/console/ledger")
            assert status == 200, problem(html)
            assert 'href="/console/static/console.css"' in html
            async with visitor.http.get("/") as response:
                assert response.status == 404
        finally:
            await visitor.close()
    async with running_node(off) as server, aiohttp.ClientSession(server.url) as http:
        async with http.get("/") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "not_found"
        async with http.get("/signin") as response:
            assert response.status == 404


async def test_the_operator_exports_and_verifies_an_audit_bundle(node: Node) -> None:
    """The ledger page's form exports the log as a signed bundle into the node's data folder and
    shows it verified with the node's public key; a consumer's session cannot."""
    assert node.server.ctx is not None
    task = await node.submit(python_task("print('audited')"))
    await node.wait(task["id"])
    operator = await _visitor(node, node.server.ctx.admin_token)
    alice = await _visitor(node, await _token(node, "alice"))
    try:
        await operator.page("/ledger")
        status, html = await operator.post("/ledger/audits", {})
        assert status == 200, problem(html)
        assert "<strong>OK</strong>" in html
        bundles = list((node.server.settings.data_dir / "audits").iterdir())
        assert len(bundles) == 1
        assert any(bundles[0].iterdir())
        await alice.page("/")
        status, _ = await alice.post("/ledger/audits", {})
        assert status == 403
        assert len(list((node.server.settings.data_dir / "audits").iterdir())) == 1
    finally:
        await operator.close()
        await alice.close()


async def test_strategies_and_their_ab_report_for_the_operator(node: Node) -> None:
    """The strategies page lists the built-in kinds and compares two versions on their orders;
    a consumer gets 403, a malformed version a 400 page."""
    assert node.server.ctx is not None
    await node.submit(python_task("print('ab')"))
    operator = await _visitor(node, node.server.ctx.admin_token)
    alice = await _visitor(node, await _token(node, "alice"))
    try:
        status, html, _ = await operator.page("/strategies")
        assert status == 200, problem(html)
        assert "cost@0" in html
        status, html, _ = await operator.page("/strategies?a=cost@0&b=performance@0")
        assert status == 200, problem(html)
        assert 'id="ab-report"' in html
        assert "Task success rate" in html
        status, html, _ = await operator.page("/strategies?a=cost&b=x")
        assert status == 400
        status, _, _ = await alice.page("/strategies")
        assert status == 403
    finally:
        await operator.close()
        await alice.close()


async def test_statements_are_shown_to_their_consumer_only(tmp_path: Path) -> None:
    """On a node whose ledger holds November 2026: alice sees her statement with its lines and
    closing balance in major units, and its CSV; bob's is a 404 for her; the operator sees all."""
    config = make_node_dir(tmp_path, "alpha", extra_toml="[scheduler]\nenabled = false\n")
    engine = open_database(load_settings(config, environ={}))
    try:
        fill_november(engine)
    finally:
        engine.dispose()
    async with running_node(config) as server:
        assert server.ctx is not None
        node = Node(
            server,
            aiohttp.ClientSession(server.url, headers={"Authorization": f"Bearer {server.ctx.admin_token}"}),
        )
        try:
            status, issued = await node.call("POST", "/api/v1/statements", {"period": "2026-11"})
            assert status == 200, issued
            ids = {s["account"]: s["id"] for s in issued["statements"]}
            operator = await _visitor(node, server.ctx.admin_token)
            alice = await _visitor(node, await _token(node, "alice"))
            try:
                status, html, _ = await alice.page("/statements")
                assert status == 200, problem(html)
                assert ids[ALICE] in html
                assert ids[BOB] not in html
                status, html, _ = await alice.page(f"/statements/{ids[ALICE]}")
                assert status == 200, problem(html)
                assert format_money(NOVEMBER_CLOSING, "CNY") in html
                assert "o1:hold:post" in html
                async with alice.http.get(f"/statements/{ids[ALICE]}/csv") as response:
                    assert response.status == 200
                    assert response.headers["Content-Disposition"].startswith("attachment;")
                    assert "o1:hold:post" in await response.text()
                status, _, _ = await alice.page(f"/statements/{ids[BOB]}")
                assert status == 404
                status, html, _ = await operator.page("/statements")
                assert ids[ALICE] in html
                assert ids[BOB] in html
            finally:
                await operator.close()
                await alice.close()
        finally:
            await node.http.close()


async def test_no_console_route_answers_without_a_session(node: Node) -> None:
    """Every console route but sign-in and the static files sends a visitor without a session to
    sign in (pages) or refuses it (streams and forms), so nothing is read without the API's checks."""
    assert node.server._runner is not None
    app = node.server._runner.app
    open_paths = {"/signin", "/signout"}
    checked = 0
    async with aiohttp.ClientSession(node.server.url) as http:
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = str(info.get("formatter") or info.get("path") or "")
            if path.startswith(("/api/", "/fed/", "/healthz", "/readyz", "/metrics", "/static")) or not path:
                continue
            if path in open_paths or route.method not in ("GET", "POST"):
                continue
            url = path.replace("{id}", "x").replace("{name}", "x")
            async with http.request(route.method, url, allow_redirects=False) as response:
                if route.method == "GET" and not url.endswith("/events"):
                    assert response.status == 303, url
                    assert response.headers["Location"].startswith("/signin?next="), url
                else:
                    assert response.status == 401, (route.method, url)
            checked += 1
    assert checked >= 20
