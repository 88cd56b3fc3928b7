"""The console's migration page in real headless Chromium: the progress bar of a migration moves,
live over the node's event stream, from nothing to the whole state and the migration completes;
the page has no console errors and passes axe-core."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.console import AXE_RUN, VENDOR, chromium_missing, chromium_path
from tests.support.migration import MIB, World

MISSING = chromium_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


async def _axe(page: Any) -> None:
    await page.evaluate((VENDOR / "axe-core" / "axe.min.js").read_text(encoding="utf-8"))
    violations = await page.evaluate(AXE_RUN)
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, bad


async def test_a_migrations_progress_bar_moves_to_completion(world: World) -> None:
    """The operator opens a running migration's page; its bar is seen part-way, then full, and
    the state reads completed, all without reloading the page."""
    from playwright.async_api import async_playwright

    source = await world.run_source("bj", state_bytes=24 * MIB)
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            context = await browser.new_context(base_url=world.api.url)
            page = await context.new_page()

            def console(message: Any) -> None:
                if message.type == "error":
                    errors.append(message.text)

            def crashed(error: Any) -> None:
                errors.append(str(error))

            page.on("console", console)
            page.on("pageerror", crashed)
            await page.goto("/signin")
            await page.get_by_label("Token").fill(world.api.headers["Authorization"].removeprefix("Bearer "))
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("button", name="Sign out").wait_for()
            # Started once the browser is ready, so the page opens while the state is moving
            # (24 MiB at 20 Mbit/s: about ten seconds of transfer).
            migration = await world.start(
                {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 20}
            )
            await page.goto(f"/migrations/{migration['id']}")
            assert await page.locator("#m-progress").count() == 1, await page.content()
            seen: list[tuple[float, float, str | None]] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                value, top, state = await page.evaluate(
                    """() => { const bar = document.getElementById("m-progress");
                    return [bar.value, bar.max, document.getElementById("migration").dataset.state || null]; }"""
                )
                seen.append((value, top, state))
                if state == "completed" and await page.get_attribute("#migration", "data-ended") == "1":
                    break
                await asyncio.sleep(0.1)
            assert seen[-1][2] == "completed", seen[-5:]
            assert any(0 < value < top for value, top, _ in seen), "the bar was never seen part-way"
            assert seen[-1][0] == seen[-1][1] >= 24 * MIB
            assert "completed" in await page.inner_text("#m-state")
            assert await page.locator("#m-history li").count() >= 5
            assert "transferring → verifying" in await page.inner_text("#m-history")
            await _axe(page)
            response = await page.goto("/migrations")
            assert response is not None
            assert response.status == 200, await page.content()
            assert migration["id"] in await page.content()
            await _axe(page)
        finally:
            await browser.close()
    assert errors == []
