"""The console's ledger page on a real node, without a browser: reconciliation results and the
reconcile form, a period's bundle downloaded, the same bundle uploaded and shown verified, a
tampered or foreign upload shown failed naming the file, forms without CSRF refused; an auditor
reads and verifies but may not reconcile; a consumer reaches none of it."""

from __future__ import annotations

import datetime as dt
import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.console.render import CONTENT_SECURITY_POLICY
from tests.support.console import Browserless, problem
from tests.support.tasks import Node, pool_node

THIS_MONTH = dt.datetime.now(dt.UTC).strftime("%Y-%m")


@pytest.fixture(name="node")
async def fixture_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node whose ledger holds alice's deposit."""
    async with pool_node(tmp_path) as node:
        yield node


async def _visitor(node: Node, token: str) -> Browserless:
    visitor = Browserless(node.server.url)
    await visitor.sign_in(token)
    return visitor


def _tampered(archive: bytes) -> bytes:
    """The archive with one transfer line changed (a digit of its amount)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            extracted = source.extractfile(member)
            assert extracted is not None
            data = extracted.read()
            if member.name.endswith("transfers.jsonl"):
                data = data.replace(b'"amount":', b'"amount":9', 1)
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return out.getvalue()


async def test_the_operator_downloads_uploads_and_verifies_a_bundle(node: Node) -> None:
    """The month's bundle downloads from the page's form; uploaded back it shows Verified: OK; a
    tampered copy, plain text and the wrong key each show the failure naming what failed."""
    assert node.server.ctx is not None
    operator = await _visitor(node, node.server.ctx.admin_token)
    try:
        status, html, _ = await operator.page("/ledger")
        assert status == 200, problem(html)
        for part in ("Reconciliation with partners", "No reconciliation has run yet", "Upload and verify"):
            assert part in html
        async with operator.http.get("/ledger/bundle", params={"period": THIS_MONTH}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/gzip"
            assert "attachment" in response.headers["Content-Disposition"]
            assert response.headers["Content-Security-Policy"]
            archive = await response.read()

        status, html = await operator.post("/ledger/verify", {"bundle": io.BytesIO(archive)})
        assert status == 200, problem(html)
        assert "Verified: OK." in html

        status, html = await operator.post("/ledger/verify", {"bundle": io.BytesIO(_tampered(archive))})
        assert status == 422
        assert "Verification FAILED" in html
        assert "transfers.jsonl" in html

        status, html = await operator.post("/ledger/verify", {"bundle": io.BytesIO(b"hello")})
        assert status == 400
        assert "not a tar or tar.gz archive" in html

        status, html = await operator.post(
            "/ledger/verify", {"bundle": io.BytesIO(archive), "key": "ed25519:" + "A" * 43}
        )
        assert status == 422
        assert "not signed by the given key" in html

        status, html = await operator.post("/ledger/verify", {"key": ""})
        assert status == 400
        assert "Choose a bundle file" in html

        status, html = await operator.post("/ledger/verify", {"bundle": io.BytesIO(archive)}, csrf=False)
        assert status == 403
        assert "CSRF" in problem(html)

        status, html, _ = await operator.page("/ledger/bundle?period=2026-13")
        assert status == 400, html
        status, html, _ = await operator.page("/ledger/bundle?period=../x")
        assert status == 400, html
    finally:
        await operator.close()


async def test_reconcile_form_shows_a_clear_failure_and_an_auditor_may_not_run_it(node: Node) -> None:
    """Reconciling with a node that is not a partner shows why on the page and records nothing;
    an auditor's session reads the page and verifies but is refused the reconcile form (403); a
    consumer's session reaches no ledger page."""
    assert node.server.ctx is not None
    operator = await _visitor(node, node.server.ctx.admin_token)
    _, user = await node.call("POST", "/api/v1/users", {"name": "ann", "role": "auditor"})
    auditor = await _visitor(node, user["token"])
    _, token = await node.call("POST", "/api/v1/consumers/alice/tokens")
    alice = await _visitor(node, token["token"])
    today = dt.datetime.now(dt.UTC).date()
    form = {"partner": "nobody", "from": (today - dt.timedelta(days=1)).isoformat(), "to": today.isoformat()}
    try:
        status, html = await operator.post("/ledger/reconcile", form)
        assert status == 404
        assert "Reconciliation failed" in html
        assert "not a pinned partner" in html
        status, html = await operator.post("/ledger/reconcile", {**form, "from": "yesterday"})
        assert status == 400
        assert "YYYY-MM-DD" in problem(html)
        _, listing = await node.call("GET", "/api/v1/ledger/reconciliations")
        assert listing["reconciliations"] == []

        status, html, _ = await auditor.page("/ledger")
        assert status == 200, problem(html)
        assert "Signed in as ann (auditor)" in html
        assert "Reconcile now" not in html
        assert "it needs an operator or the admin" in html
        async with auditor.http.get("/ledger/bundle", params={"period": THIS_MONTH}) as response:
            assert response.status == 200
            archive = await response.read()
        status, html = await auditor.post("/ledger/verify", {"bundle": io.BytesIO(archive)})
        assert (status, "Verified: OK." in html) == (200, True), problem(html)
        status, html = await auditor.post("/ledger/reconcile", form)
        assert status == 403
        assert "auditor" in problem(html)

        for path in ("/ledger", f"/ledger/bundle?period={THIS_MONTH}"):
            status, html, _ = await alice.page(path)
            assert status == 403, path
        status, _ = await alice.post("/ledger/verify", {"bundle": io.BytesIO(archive)})
        assert status == 403
    finally:
        for visitor in (operator, auditor, alice):
            await visitor.close()


async def test_errors_before_a_console_handler_are_console_pages(node: Node) -> None:
    """An upload over the node's body limit (with its length given, or chunked), a path that is no
    page and a method a page does not take are answered with the console's error page and the
    same status (413, 404, 405), signed-in look and security headers kept; the API still answers
    such requests in JSON."""
    assert node.server.ctx is not None
    limit = node.server.ctx.settings.http.max_body_bytes
    operator = await _visitor(node, node.server.ctx.admin_token)
    try:
        await operator.page("/ledger")
        big = io.BytesIO(b"x" * (limit + 1))
        async with operator.http.post(
            "/ledger/verify", data={"csrf": operator.csrf, "bundle": big}
        ) as response:
            html = await response.text()
            assert (response.status, response.content_type) == (413, "text/html"), html
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["X-Request-Id"]
        assert "<title>Too large" in html
        assert "Sign out" in html  # the page of a signed-in operator
        assert f"request body exceeds {limit} bytes (body_too_large)" in problem(html)

        async def chunks() -> AsyncIterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="bundle"; filename="x"\r\n\r\n'
            for _ in range(limit // 65_536 + 2):
                yield b"x" * 65_536

        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        async with operator.http.post("/ledger/verify", data=chunks(), headers=headers) as response:
            html = await response.text()
            assert (response.status, response.content_type) == (413, "text/html"), html
        assert "(body_too_large)" in problem(html)

        browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        for method, path, status in (("GET", "/no-such-page", 404), ("PUT", "/ledger", 405)):
            async with operator.http.request(method, path, headers=browser) as response:
                html = await response.text()
                assert (response.status, response.content_type) == (status, "text/html"), html
            assert problem(html), html
        async with operator.http.get("/no-such-page") as response:  # not a browser: the API's 404
            assert (response.status, (await response.json())["error"]) == (404, "not_found")

        async with node.http.post(
            "/api/v1/ledger/bundles/verify", data=io.BytesIO(b"x" * (limit + 1))
        ) as response:
            assert (response.status, (await response.json())["error"]) == (413, "body_too_large")
        status, body = await node.call("GET", "/api/v1/no-such-thing")
        assert (status, body["error"]) == (404, "not_found")
    finally:
        await operator.close()
