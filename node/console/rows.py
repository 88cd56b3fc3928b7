"""Table rows the console renders in Python rather than in a template: tables with one row per
partner (100 and more), where Jinja's per-expression work was most of the page's server time.
Every value is escaped here; the result is Markup for the template. Pure (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from markupsafe import Markup, escape

from node.console.render import duration, money, state_badge


def partner_rows(partners: Iterable[Mapping[str, Any]], url: Callable[[str], str]) -> Markup:
    """The federation page's partner rows: name, URL, fingerprint, link (and last error), catalog
    version, offers, catalog age, credit limit, source, and the remove link (`url` makes console
    URLs)."""
    rows = []
    for p in partners:
        name = escape(p["name"])
        error = p.get("last_error")
        link = str(state_badge(p.get("status"))) + (
            f' <span class="muted">{escape(error)}</span>' if error else ""
        )
        version = p.get("catalog_version")
        agreement = p.get("agreement") or {}
        if p.get("source") != "config":
            remove = escape(url(f"federation/partners/{p['name']}/remove"))
            action = f'<a href="{remove}">Remove {name}</a>'
        else:
            action = '<span class="muted">in node.toml</span>'
        first_url = (p.get("urls") or [""])[0]
        credit = money(agreement.get("credit_limit"), agreement.get("currency"))
        rows.append(
            f'<tr data-partner="{name}"><td>{name}</td><td>{escape(first_url)}</td>'
            f"<td><code>{escape(p.get('fingerprint', ''))}</code></td><td>{link}</td>"
            f'<td class="catalog-version">{"none yet" if version is None else escape(version)}</td>'
            f'<td class="num">{escape(p.get("offers", 0))}</td><td>{escape(duration(p.get("catalog_age_s")))}</td>'
            f'<td class="num">{escape(credit)}</td><td>{escape(p.get("source", ""))}</td><td>{action}</td></tr>\n'
        )
    return Markup("".join(rows))  # noqa: S704 - every value is escaped above
