"""Times shown to people: UTC ISO 8601 with a `Z`, from epoch seconds or milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from node.times import format_ms, format_ts


def test_known_moments() -> None:
    """Epoch seconds and milliseconds read as UTC with a Z; nothing reads as a dash."""
    assert format_ts(0) == "1970-01-01T00:00:00Z"
    assert format_ts(1_796_290_663) == "2026-12-03T09:37:43Z"
    assert format_ts(1_796_290_663.9) == "2026-12-03T09:37:43Z"
    assert format_ms(1_796_290_663_042) == "2026-12-03T09:37:43Z"
    assert format_ms(1_796_290_663_042, millis=True) == "2026-12-03T09:37:43.042Z"
    assert format_ts(None) == format_ms(None) == "-"


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_round_trip(ms: int) -> None:
    """What is shown parses back (fromisoformat) to the same moment, to the millisecond."""
    parsed = datetime.fromisoformat(format_ms(ms, millis=True))
    assert parsed.tzinfo == UTC
    assert round(parsed.timestamp() * 1000) == ms
    assert format_ts(ms // 1000) == format_ms(ms)
