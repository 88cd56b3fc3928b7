"""Journeys through the console in real headless Chromium (Debian's, driven by Playwright) against
two real node processes: buyer `a` (no pools) and seller `b` (a local pool).

One browser for the module; each journey is a test that reuses it. Every page visited is checked
for console errors and run through axe-core (no serious or critical violations)."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node.launcher import NodeProcess
from tests.support.cli import cpnode
from tests.support.console import PageChecks, call, chromium_missing, chromium_path
from tests.support.nodes import make_node_dir
from tests.support.tasks import pool_toml

MISSING = chromium_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
TIMEOUT_MS = 60_000

FEDERATION_TOML = """
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 1

[tasks]
poll_s = 0.05
partner_poll_s = 0.1

[trading]
trade_timeout_s = 10

[console]
poll_s = 0.5
"""


@dataclass
class World:
    """The two running nodes and who signs in where."""

    a_url: str
    b_url: str
    admin: str
    alice: str
    bob: str
    b_key: str
    bobs_order: str


def _admin_token(config: Path) -> str:
    return (config.parent / "keys" / "admin.token").read_text(encoding="utf-8").strip()


def _public_key(config: Path) -> str:
    done = cpnode("keys", "show", "--json", config=config)
    assert done.code == 0, done.output
    import json

    return str(json.loads(done.out)["public_key"])


@pytest.fixture(name="world", scope="module")
def fixture_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Seller b (pinning buyer a) and buyer a (pinning nobody yet), alice and bob funded on a, and
    one order of bob's."""
    base = tmp_path_factory.mktemp("console")
    b_config = make_node_dir(base, "b", extra_toml=FEDERATION_TOML + pool_toml(slots=4))
    a_config = make_node_dir(base, "a", extra_toml=FEDERATION_TOML)
    b_proc, a_proc = NodeProcess(b_config), NodeProcess(a_config)
    b_url = b_proc.start()
    try:
        a_url = a_proc.start()
        try:
            a_key = _public_key(a_config)
            done = cpnode(
                "partners",
                "add",
                "a",
                "--url",
                a_url,
                "--key",
                a_key,
                "--credit-limit",
                "10000000",
                config=b_config,
            )
            assert done.code == 0, done.output
            admin = _admin_token(a_config)
            tokens = {}
            for consumer in ("alice", "bob"):
                assert call(a_url, admin, "POST", "/api/v1/consumers", {"id": consumer})[0] in (200, 201)
                status, _ = call(
                    a_url,
                    admin,
                    "POST",
                    f"/api/v1/consumers/{consumer}/deposits",
                    {"amount": 1_000_000, "id": f"d-{consumer}"},
                )
                assert status == 201
                status, body = call(a_url, admin, "POST", f"/api/v1/consumers/{consumer}/tokens")
                assert status == 201
                tokens[consumer] = body["token"]
            # bob's order, on a's own offers? a has none: it is placed once b's catalog is here (below).
            yield World(a_url, b_url, admin, tokens["alice"], tokens["bob"], _public_key(b_config), "")
        finally:
            a_proc.stop()
    finally:
        b_proc.stop()


@pytest.fixture(name="browser", scope="module")
def fixture_browser() -> Iterator[Any]:
    """One headless system Chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(name="checks", scope="module")
def fixture_checks() -> Iterator[PageChecks]:
    """Console errors and accessibility, checked on every page the module's journeys visit."""
    checks = PageChecks()
    yield checks
    assert checks.errors == [], checks.errors
    assert checks.checked  # axe-core really ran on the pages


def _sign_in(browser: Any, checks: PageChecks, url: str, token: str) -> Any:
    context = browser.new_context(base_url=url, timezone_id="Asia/Shanghai")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    checks.watch(page)
    page.goto("/")
    assert "/signin" in page.url
    checks.axe(page)
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page


def test_operator_pins_a_partner_watches_its_catalog_arrive_and_sees_an_order_appear(
    world: World, browser: Any, checks: PageChecks
) -> None:
    """The operator signs in, pins b on the federation page, sees b's catalog arrive live, then
    sees alice's order appear live on the orders page while alice places it in her own browser."""
    from playwright.sync_api import expect

    operator = _sign_in(browser, checks, world.a_url, world.admin)
    checks.axe(operator)
    operator.goto("/federation")
    operator.get_by_label("Name").fill("b")
    operator.get_by_label("URL").fill(world.b_url)
    operator.get_by_label("Public key").fill(world.b_key)
    operator.get_by_label("Credit limit (major units)").fill("1,000.00")
    operator.get_by_role("button", name="Pin partner").click()
    row = operator.locator('tr[data-partner="b"]')
    expect(row).to_be_visible()
    expect(row.locator(".catalog-version")).to_have_text(re.compile(r"^\d+$"), timeout=TIMEOUT_MS)
    expect(row).to_contain_text("ok")
    checks.axe(operator)

    operator.goto("/orders")
    checks.axe(operator)
    alice = _sign_in(browser, checks, world.a_url, world.alice)
    checks.axe(alice)
    alice.goto("/offers")
    alice.get_by_label("Chip model").first.fill("cpu")
    alice.get_by_role("button", name="Find matches").click()
    matches = alice.locator("#matches")
    expect(matches).to_contain_text("b")
    checks.axe(alice)
    alice.get_by_role("button", name="Order #1").click()
    alice.wait_for_url(re.compile(r"/orders/"))
    order_id = alice.url.rsplit("/", 1)[1]
    expect(alice.locator("#order-state")).to_contain_text(re.compile("accepted|settled|placed"))
    checks.axe(alice)
    expect(operator.get_by_role("link", name=order_id)).to_be_visible(timeout=TIMEOUT_MS)
    operator.context.close()
    alice.context.close()


def test_consumer_submits_a_task_and_follows_its_log_to_the_end(
    world: World, browser: Any, checks: PageChecks
) -> None:
    """alice submits a task from the offers page and watches its state and log arrive live."""
    from playwright.sync_api import expect

    _wait_for_catalog(world)
    alice = _sign_in(browser, checks, world.a_url, world.alice)
    alice.goto("/offers")
    form = alice.locator("#submit-task")
    form.get_by_label("Command").fill(f"{sys.executable} -c \"print('console journey')\"")
    form.get_by_label("Chip model").fill("cpu")
    form.get_by_role("button", name="Submit task").click()
    alice.wait_for_url(re.compile(r"/tasks/"))
    expect(alice.locator("#task-log")).to_contain_text("console journey", timeout=TIMEOUT_MS)
    expect(alice.locator("#task-outcome")).to_have_text("succeeded", timeout=TIMEOUT_MS)
    expect(alice.locator("#task-history li").first).to_be_visible()
    checks.axe(alice)
    alice.goto("/")
    expect(alice.locator("#balance")).to_contain_text("CNY")
    checks.axe(alice)
    alice.context.close()


def test_consumer_is_refused_operator_pages_and_other_consumers_orders(
    world: World, browser: Any, checks: PageChecks
) -> None:
    """alice gets 403 on every operator page and 404 on bob's order; a POST without the CSRF
    token is refused and places nothing."""
    _wait_for_catalog(world)
    status, placed = call(
        world.a_url,
        world.bob,
        "POST",
        "/api/v1/orders",
        {"demand": {"units": 1, "hours": 1, "chip_model": "cpu"}},
    )
    assert status == 201, placed
    bobs_order = placed["orders"][0]["id"] if "orders" in placed else placed["id"]
    alice = _sign_in(browser, checks, world.a_url, world.alice)
    for path in ("/federation", "/pools", "/migrations", "/ledger", "/plan"):
        checks.expect_refusal(world.a_url + path)
        response = alice.goto(path)
        assert response is not None
        assert response.status == 403, path
        assert "operator" in alice.locator(".problem").inner_text()
        checks.axe(alice)
    checks.expect_refusal(f"{world.a_url}/orders/{bobs_order}")
    response = alice.goto(f"/orders/{bobs_order}")
    assert response is not None
    assert response.status == 404
    alice.goto("/orders")
    assert bobs_order not in alice.locator("main").inner_text()
    checks.axe(alice)
    alice.goto("/statements")
    checks.axe(alice)
    _, before = call(world.a_url, world.alice, "GET", "/api/v1/orders")
    refused = alice.context.request.post(
        world.a_url + "/orders", form={"offer_id": "x", "source": "partner:b", "units": "1", "hours": "1"}
    )
    assert refused.status == 403
    _, after = call(world.a_url, world.alice, "GET", "/api/v1/orders")
    assert len(after["orders"]) == len(before["orders"])
    alice.context.close()


def test_every_operator_page_works_in_the_browser(world: World, browser: Any, checks: PageChecks) -> None:
    """Each operator page loads without console errors and passes axe-core."""
    from playwright.sync_api import expect

    operator = _sign_in(browser, checks, world.a_url, world.admin)
    for path in (
        "/",
        "/federation",
        "/pools",
        "/orders",
        "/migrations",
        "/ledger",
        "/statements",
        "/strategies",
        "/strategies?a=cost@0&b=value@0",
        "/plan",
        "/offers",
    ):
        response = operator.goto(path)
        assert response is not None
        assert response.status == 200, path
        expect(operator.locator("h1")).to_be_visible()
        checks.axe(operator)
    operator.goto("/ledger")
    operator.get_by_role(
        "button", name="Export the whole log to the node's data folder and verify it"
    ).click()
    expect(operator.locator("#audit")).to_contain_text("OK")
    checks.axe(operator)
    # Times are shown in the viewer's zone, with UTC kept on hover.
    first_time = operator.locator("time").first
    if first_time.count():
        assert first_time.get_attribute("title", timeout=TIMEOUT_MS).endswith("Z")
        expect(first_time).to_contain_text("Asia/Shanghai")
    operator.context.close()


def test_operator_reconciles_downloads_and_verifies_on_the_ledger_page(
    world: World, browser: Any, checks: PageChecks, tmp_path: Path
) -> None:
    """On the ledger page the operator reconciles with b (the run appears with its discrepancies),
    downloads this month's signed bundle, uploads it and sees it verified, then uploads a tampered
    copy and sees the failure naming the file, and a file over the body limit and sees the
    console's error page (413), not the API's JSON."""
    import tarfile

    from playwright.sync_api import expect

    _wait_for_catalog(world)
    operator = _sign_in(browser, checks, world.a_url, world.admin)
    expect(operator.get_by_test_id("who")).to_contain_text("admin")
    operator.goto("/ledger")
    operator.get_by_label("Partner").select_option("b")
    operator.get_by_role("button", name="Reconcile now").click()
    expect(operator.locator("#reconciled")).to_contain_text("Reconciled with b")
    expect(operator.locator("#reconciliations tbody tr").first).to_contain_text("b")
    expect(operator.locator("#discrepancies")).to_be_visible()
    checks.axe(operator)

    with operator.expect_download() as download_info:
        operator.get_by_role("button", name="Download its signed bundle (.tar.gz)").click()
    bundle = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(bundle)
    assert bundle.name.endswith(".tar.gz")
    operator.get_by_label("Bundle to verify").set_input_files(bundle)
    operator.get_by_role("button", name="Upload and verify").click()
    expect(operator.locator("#verification")).to_contain_text("Verified: OK.")
    checks.axe(operator)

    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(bundle) as source, tarfile.open(tampered, "w:gz") as target:
        for member in source.getmembers():
            extracted = source.extractfile(member)
            assert extracted is not None
            data = extracted.read()
            if member.name.endswith("transfers.jsonl"):
                data = data.replace(b'"amount":', b'"amount":9', 1)
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    checks.expect_refusal(world.a_url + "/ledger/verify")
    operator.get_by_label("Bundle to verify").set_input_files(tampered)
    operator.get_by_role("button", name="Upload and verify").click()
    expect(operator.locator("#verification")).to_contain_text("Verification FAILED")
    expect(operator.locator("#verification")).to_contain_text("transfers.jsonl")
    checks.axe(operator)

    too_big = tmp_path / "too-big.tar.gz"  # over the node's body limit ([http] max_body_bytes, 1 MiB)
    too_big.write_bytes(b"x" * (1_048_576 + 1))
    operator.goto("/ledger")
    operator.get_by_label("Bundle to verify").set_input_files(too_big)
    operator.get_by_role("button", name="Upload and verify").click()
    expect(operator).to_have_title(re.compile(r"^Too large"))
    expect(operator.locator(".problem")).to_contain_text("(body_too_large)")
    expect(operator.get_by_role("button", name="Sign out")).to_be_visible()
    checks.axe(operator)
    operator.context.close()


def _wait_for_catalog(world: World) -> None:
    """b is pinned and its catalog is here (the first journey does it in the browser; a test run alone does it here)."""
    import time

    status, listing = call(world.a_url, world.admin, "GET", "/api/v1/partners")
    if not any(p["name"] == "b" for p in listing["partners"]):
        status, _ = call(
            world.a_url,
            world.admin,
            "POST",
            "/api/v1/partners",
            {"name": "b", "urls": [world.b_url], "public_key": world.b_key, "credit_limit": 100_000},
        )
        assert status == 201
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, listing = call(world.a_url, world.admin, "GET", "/api/v1/partners")
        if any(p["name"] == "b" and p["catalog_version"] is not None for p in listing["partners"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"b's catalog did not arrive: {listing}")
