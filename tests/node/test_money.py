"""Money shown to people: exact major units with the currency, and typed amounts parsed exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.money import format_money, format_rate, format_score, major_text, parse_major


def test_known_amounts() -> None:
    """Minor units read as major units with separators, per the currency's exponent."""
    assert format_money(120_000, "CNY") == "1,200.00 CNY"
    assert format_money(5, "CNY") == "0.05 CNY"
    assert format_money(-250, "CNY") == "-2.50 CNY"
    assert format_money(1_500, "JPY") == "1,500 JPY"
    assert format_money(1_234, "KWD") == "1.234 KWD"
    assert format_rate(21_800, "CNY") == "218.00 CNY/h"


def test_parse_refuses_inexact_or_garbage() -> None:
    """More decimals than the currency has, or text that is not a number, is refused."""
    assert parse_major("1,200.5", "CNY") == 120_050
    assert parse_major("-3", "CNY") == -300
    for bad in ("1.234", "abc", "1e3", "", "1.2.3"):
        with pytest.raises(ValueError, match="not an amount"):
            parse_major(bad, "CNY")


@given(st.integers(-(2**53), 2**53), st.sampled_from(["CNY", "JPY", "KWD", "USD"]))
def test_round_trip(minor: int, currency: str) -> None:
    """Formatting then parsing gives back the same minor units, for any amount."""
    assert parse_major(major_text(minor, currency), currency) == minor


def test_scores_read_as_a100_equivalents() -> None:
    """A metric score in thousandths of an A100 reads with two decimals, one way: 8000 is 8.00."""
    assert format_score(8000) == "8.00"
    assert format_score(1000) == "1.00"
    assert format_score(705) == "0.70"
    assert format_score(25_200) == "25.20"
    assert format_score(None) == "-"
