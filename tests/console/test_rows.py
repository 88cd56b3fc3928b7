"""Partner rows rendered in Python: every value escaped, money and ages as elsewhere, the remove
link only for partners not pinned in node.toml."""

from __future__ import annotations

from node.console.rows import partner_rows


def test_partner_rows_escape_and_format_every_value() -> None:
    """A hostile last error is escaped; credit in major units; a config partner has no remove link."""
    rows = str(
        partner_rows(
            [
                {
                    "name": "b",
                    "urls": ["http://127.0.0.1:1/?a=1&b=2"],
                    "fingerprint": "SHA256:x",
                    "status": "failing",
                    "last_error": "<script>alert(1)</script>",
                    "catalog_version": None,
                    "offers": 3,
                    "catalog_age_s": 7200,
                    "agreement": {"credit_limit": 120_000, "currency": "CNY"},
                    "source": "api",
                },
                {"name": "c", "urls": ["http://127.0.0.1:2/"], "status": "ok", "source": "config"},
            ],
            lambda path: "/" + path,
        )
    )
    assert "<script>" not in rows
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rows
    assert "http://127.0.0.1:1/?a=1&amp;b=2" in rows
    assert '<tr data-partner="b">' in rows
    assert "1,200.00 CNY" in rows
    assert "2 h 0 min" in rows
    assert "none yet" in rows
    assert '<a href="/federation/partners/b/remove">Remove b</a>' in rows
    assert "Remove c" not in rows
    assert "in node.toml" in rows
    assert 'class="badge badge-good">ok<' in rows
