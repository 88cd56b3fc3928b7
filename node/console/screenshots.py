"""`python -m node.console.screenshots [--out DIR]`: a picture of every console page, taken in the
system's headless Chromium against two real node processes started here (buyer `a`, seller `b`
with a local pool), after a partner is pinned, an order placed and a task run. `make screenshots`
writes them to docs/console/, which the README links to.

It needs Playwright (the `test` extra) and Debian's `chromium`; it never downloads a browser.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from node.cli.main import main as cpnode
from node.config import load_settings
from node.launcher import NodeProcess
from node.runfile import read_admin_token

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 900
NODE_TOML = """
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 1

[tasks]
poll_s = 0.05
partner_poll_s = 0.1

[console]
poll_s = 1

[metrics]
pool_sample_every_s = 1
"""
POOL_TOML = """
[[pools]]
name = "cpu"
plugin = "local"
options = {{ root = "pools/cpu", slots = 4, price_minor_per_slot_hour = 3600, runtimes = {{ python = ["{python}"] }} }}
"""
OPERATOR_PAGES = (
    "",
    "federation",
    "pools",
    "orders",
    "migrations",
    "ledger",
    "statements",
    "strategies?a=cost@0&b=value@0",
    "plan",
    "offers",
)


def _call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - a node this command started on 127.0.0.1
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def _init(base: Path, name: str, extra: str) -> Path:
    directory = base / name
    code = cpnode(
        [
            "init",
            str(directory),
            "--name",
            name,
            "--operator",
            f"Operator of {name}",
            "--region",
            "Local",
            "--port",
            "0",
        ]
    )
    if code != 0:
        raise SystemExit(f"cpnode init {name} failed")
    config = directory / "node.toml"
    with config.open("a", encoding="utf-8") as handle:
        handle.write(extra)
    return config


def _wait(check: Any, what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"gave up waiting for {what}")


def _populate(a_url: str, admin: str, b_url: str, b_key: str) -> dict[str, str]:
    """Pin b, fund alice, place an order, run a task and reconcile with b; what the pictures show."""
    _call(
        a_url,
        admin,
        "POST",
        "/api/v1/partners",
        {"name": "b", "urls": [b_url], "public_key": b_key, "credit_limit": 5_000_000},
    )
    _wait(
        lambda: any(
            p["catalog_version"] is not None
            for p in _call(a_url, admin, "GET", "/api/v1/partners")["partners"]
        ),
        "b's catalog",
    )
    _call(a_url, admin, "POST", "/api/v1/consumers", {"id": "alice"})
    _call(a_url, admin, "POST", "/api/v1/consumers/alice/deposits", {"amount": 2_000_000, "id": "first"})
    token = _call(a_url, admin, "POST", "/api/v1/consumers/alice/tokens")["token"]
    _call(a_url, token, "POST", "/api/v1/orders", {"demand": {"units": 1, "hours": 2, "chip_model": "cpu"}})
    program = [
        sys.executable,
        "-c",
        "import time\nfor i in range(5): print('epoch', i, 'loss', round(1 / (i + 1), 3)); time.sleep(0.1)",
    ]
    spec = {"program": {"command": program}, "resources": {"units": 1, "hours": 1, "chip_model": "cpu"}}
    task = _call(a_url, token, "POST", "/api/v1/tasks", {"spec": spec})
    _wait(
        lambda: _call(a_url, token, "GET", f"/api/v1/tasks/{task['id']}")["state"] == "released", "the task"
    )
    _call(a_url, admin, "POST", "/api/v1/ledger/reconciliations", {"partner": "b"})  # yesterday, UTC
    return {"token": token, "task": task["id"]}


def _shoot(a_url: str, admin: str, consumer: dict[str, str], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            for who, token, pages in (
                ("operator", admin, [*OPERATOR_PAGES, f"tasks/{consumer['task']}"]),
                ("consumer", consumer["token"], ["", "offers", "orders", f"tasks/{consumer['task']}"]),
            ):
                context = browser.new_context(
                    base_url=a_url, viewport={"width": WIDTH, "height": HEIGHT}, timezone_id="UTC"
                )
                page = context.new_page()
                page.goto("/signin")
                if who == "operator":
                    page.screenshot(path=str(out / "signin.png"))
                    written.append(out / "signin.png")
                page.get_by_label("Token").fill(token)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("button", name="Sign out").wait_for()
                for path in pages:
                    page.goto("/" + path)
                    if path == "offers":
                        page.get_by_label("Chip model").first.fill("cpu")
                        page.get_by_role("button", name="Find matches").click()
                        page.locator("#matches").wait_for()
                    if path.startswith("tasks/"):
                        page.locator("#task[data-ended]").wait_for(timeout=30_000)
                    name = path.split("/")[0].split("?")[0] or "overview"
                    target = out / f"{who}-{name}.png"
                    page.screenshot(path=str(target), full_page=True)
                    written.append(target)
                context.close()
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Start two nodes, give them something to show, and photograph every console page."""
    parser = argparse.ArgumentParser(
        prog="python -m node.console.screenshots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=Path("docs/console"), help="where the PNG files go (default docs/console)"
    )
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("playwright is not installed: pip install -e '.[test]'", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="cpnode-screenshots-"))
    try:
        b_config = _init(base, "b", NODE_TOML + POOL_TOML.format(python=sys.executable))
        a_config = _init(base, "a", NODE_TOML)
        b, a = NodeProcess(b_config), NodeProcess(a_config)
        b_url = b.start()
        try:
            a_url = a.start()
            try:
                a_settings, b_settings = (
                    load_settings(a_config, environ={}),
                    load_settings(b_config, environ={}),
                )
                admin = read_admin_token(a_settings)
                a_key = _call(a_url, admin, "GET", "/api/v1/node")["public_key"]
                b_key = _call(b_url, read_admin_token(b_settings), "GET", "/api/v1/node")["public_key"]
                cpnode(
                    [
                        "partners",
                        "add",
                        "a",
                        "--url",
                        a_url,
                        "--key",
                        a_key,
                        "--credit-limit",
                        "10000000",
                        "--config",
                        str(b_config),
                    ]
                )
                consumer = _populate(a_url, admin, b_url, b_key)
                for path in _shoot(a_url, admin, consumer, args.out):
                    print(path)
            finally:
                a.stop()
        finally:
            b.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
