"""Rendering console pages: the Jinja2 environment, the filters that show money and time one way
everywhere, and the security headers every console response carries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from markupsafe import Markup, escape

from node.money import format_money, format_rate, format_score
from node.times import format_ts

if TYPE_CHECKING:
    import jinja2

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def utc_time(seconds: float | None) -> Markup:
    """A `<time>` element reading as the CLI does (`2026-12-03T09:44:23Z`, node.times); the
    console's script shows it in the viewer's zone and keeps UTC on hover."""
    if not isinstance(seconds, int | float):
        return Markup('<span class="muted">-</span>')
    iso = format_ts(seconds)
    # Digits, dashes, colons and letters T and Z only: nothing to escape.
    return Markup(f'<time datetime="{iso}" title="{iso}">{iso}</time>')  # noqa: S704


def utc_time_ms(milliseconds: int | None) -> Markup:
    """`utc_time` of a time in milliseconds."""
    return utc_time(milliseconds / 1000 if isinstance(milliseconds, int | float) else None)


def duration(seconds: float | None) -> str:
    """A duration for people: `42 s`, `3 min`, `2 h 5 min`, `3 d 4 h`."""
    if not isinstance(seconds, int | float):
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def byte_size(count: int | None) -> str:
    """Bytes for people (KiB, MiB, GiB)."""
    if not isinstance(count, int | float):
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def state_badge(state: str | None) -> Markup:
    """A state word with a class for its colour (the word itself says it, for screen readers)."""
    word = state if isinstance(state, str) and state else "-"
    kind = (
        "bad"
        if word
        in {"failed", "refused", "voided", "error", "rolled_back", "needs_attention", "offline", "cancelled"}
        else (
            "good"
            if word
            in {"settled", "succeeded", "done", "online", "ok", "accepted", "running", "completed", "ready"}
            else "neutral"
        )
    )
    return Markup(f'<span class="badge badge-{kind}">{escape(word)}</span>')  # noqa: S704 - the word is escaped


def money(minor: int | None, currency: str | None) -> str:
    """An amount in major units with its currency (node.money), or "-" while it is not known."""
    if not isinstance(minor, int) or not isinstance(currency, str) or not currency:
        return "-"
    return format_money(minor, currency)


def rate(minor_per_hour: int | None, currency: str | None) -> str:
    """A price per hour (node.money), or "-" while it is not known."""
    if not isinstance(minor_per_hour, int) or not isinstance(currency, str) or not currency:
        return "-"
    return format_rate(minor_per_hour, currency)


def make_environment() -> jinja2.Environment:
    """The console's template environment: autoescaped; a field an answer lacks renders empty
    (an API answer may leave out what does not apply yet) instead of failing the page."""
    import jinja2  # loaded by the processes that serve the console, not by every node process

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("node.console", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money,
        rate=rate,
        score=format_score,
        utc=utc_time,
        utc_ms=utc_time_ms,
        duration=duration,
        bytes=byte_size,
        badge=state_badge,
    )
    return env


def html_response(body: str, status: int = 200) -> web.Response:
    """An HTML page with the console's security headers, never cached."""
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return response


def render(env: jinja2.Environment, template: str, status: int = 200, **values: Any) -> web.Response:
    """Render `template` with `values` into a response."""
    return html_response(env.get_template(template).render(**values), status)
