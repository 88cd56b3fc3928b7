"""Console test helpers: a signed-in HTTP client (cookies kept, the CSRF token read from each
page), and the system Chromium for the browser tests."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
PROBLEM_RE = re.compile(r'class="problem"[^>]*>([^<]*)<')
LOOPBACK_PARTNERS = '[federation]\nallow_networks = ["127.0.0.0/8"]\n'
"""Node config that lets partners live on this host (tests only)."""
VENDOR = Path(__file__).resolve().parents[2] / "node" / "console" / "static" / "vendor"


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (None when Debian's chromium is installed)."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def chromium_path() -> str:
    """The system Chromium's executable."""
    return str(CHROMIUM) if CHROMIUM.exists() else str(shutil.which("chromium"))


@dataclass
class Browserless:
    """A console visitor without a browser: aiohttp with a cookie jar that keeps 127.0.0.1's cookies."""

    base: str
    http: aiohttp.ClientSession = field(init=False)
    csrf: str = ""

    def __post_init__(self) -> None:
        self.http = aiohttp.ClientSession(self.base, cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()

    async def page(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        """GET a page (following redirects); (status, HTML, response). Remembers its CSRF token."""
        async with self.http.get(path) as response:
            text = await response.text()
        found = CSRF_RE.search(text)
        if found:
            self.csrf = found.group(1)
        return response.status, text, response

    async def post(self, path: str, data: dict[str, Any], csrf: bool = True) -> tuple[int, str]:
        """POST a form (with the last page's CSRF token unless `csrf` is False); (status, HTML)."""
        form = {**data, **({"csrf": self.csrf} if csrf else {})}
        async with self.http.post(path, data=form) as response:
            return response.status, await response.text()

    async def sign_in(self, token: str, prefix: str = "/") -> int:
        """Sign in with `token`; the status of the page it lands on."""
        await self.page(prefix + "signin")
        status, _ = await self.post(prefix + "signin", {"token": token, "next": prefix})
        await self.page(prefix)
        return status


def problem(html: str) -> str:
    """The message of a console error page ('' when there is none)."""
    found = PROBLEM_RE.search(html)
    return found.group(1) if found else ""


def call(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One synchronous API call with a bearer token; (status, JSON answer)."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""


class PageChecks:
    """What every page visit in a browser test checks: no console errors and no serious or
    critical accessibility violations (axe-core, vendored, run in the page)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.axe_source = (VENDOR / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
        self.checked: list[str] = []
        self.refusals: set[str] = set()

    def expect_refusal(self, url: str) -> None:
        """The browser's own report that `url` answered an error status is expected (a refusal
        under test), not a page error."""
        self.refusals.add(url)

    def watch(self, page: Any) -> None:
        """Collect `page`'s console errors and uncaught exceptions."""

        def console(message: Any) -> None:
            if message.type != "error":
                return
            refused = message.text.startswith(
                "Failed to load resource: the server responded with a status of 4"
            )
            if refused and page.url in self.refusals:
                return
            self.errors.append(f"{page.url}: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))

    def axe(self, page: Any) -> None:
        """Run axe-core on the page as it is now; fail on a serious or critical violation."""
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            page.evaluate(self.axe_source)
        violations = page.evaluate(AXE_RUN)
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, f"{page.url}: {bad}"
        self.checked.append(page.url)
