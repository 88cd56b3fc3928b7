"""Times as people read them: UTC, ISO 8601, with a `Z`.

The node stores times as integer epoch seconds (`*_ts`) or milliseconds (`*_ms`), always UTC.
Everything shown to a person — the CLI, the demo — goes through these functions, so a moment always
reads `2026-12-03T09:44:23Z` (and `-` where there is none); JSON keeps the integers.
"""

from __future__ import annotations

from datetime import UTC, datetime

NONE = "-"


def format_ts(ts_s: float | None) -> str:
    """Epoch seconds as `2026-12-03T09:44:23Z` (whole seconds), `-` for None."""
    if ts_s is None:
        return NONE
    return datetime.fromtimestamp(int(ts_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_ms(ts_ms: int | None, *, millis: bool = False) -> str:
    """Epoch milliseconds as `2026-12-03T09:44:23Z` (with `.123` before the `Z` when `millis`),
    `-` for None."""
    if ts_ms is None:
        return NONE
    seconds, ms = divmod(int(ts_ms), 1000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms:03d}Z" if millis else f"{text}Z"
