"""Money as people read it: integer minor units shown in major units with the currency.

Amounts are stored and signed as integer minor units (fen for CNY). Everything shown to a person —
the CLI, the demo, error messages — goes through `format_money`, so `120000` CNY always reads
`1,200.00 CNY` and a rate `218.00 CNY/h`. The exponent comes from ISO 4217 (2 unless listed).
"""

from __future__ import annotations

# ISO 4217 minor-unit exponents that are not 2.
_EXPONENTS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "XAF": 0,
    "XOF": 0,
    "BHD": 3,
    "JOD": 3,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
}


def exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has (2 for CNY, 0 for JPY)."""
    return _EXPONENTS.get(currency.upper(), 2)


def major_text(minor: int, currency: str) -> str:
    """`minor` in major units with thousands separators, exactly (no float): 120000 → '1,200.00'."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    scale: int = 10**places
    whole, fraction = divmod(abs(minor), scale)
    text = f"{whole:,}"
    return f"{sign}{text}.{fraction:0{places}d}" if places else f"{sign}{text}"


def format_money(minor: int, currency: str) -> str:
    """An amount for people: `format_money(120000, "CNY") == "1,200.00 CNY"`."""
    return f"{major_text(minor, currency)} {currency}"


def format_rate(minor_per_hour: int, currency: str, unit: str = "h") -> str:
    """A price per time unit: `format_rate(21800, "CNY") == "218.00 CNY/h"`."""
    return f"{format_money(minor_per_hour, currency)}/{unit}"


def format_score(milli: int | None) -> str:
    """A metric score for people: thousandths of an A100 shown as A100 equivalents with two
    decimals (`format_score(8000) == "8.00"`), "-" when there is none. Scores are not money; they
    sit here because they are shown beside prices, one way everywhere."""
    if milli is None:
        return "-"
    whole, fraction = divmod(abs(milli), 1000)
    return f"{'-' if milli < 0 else ''}{whole:,}.{fraction // 10:02d}"


def parse_major(text: str, currency: str) -> int:
    """Major units typed by a person ('1,200.5') as exact minor units; ValueError if not exact."""
    places = exponent(currency)
    cleaned = text.strip().replace(",", "").replace("_", "")
    negative = cleaned.startswith("-")
    whole, _, fraction = cleaned.lstrip("+-").partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > places:
        raise ValueError(f"{text!r} is not an amount in {currency} with at most {places} decimals")
    scale: int = 10**places
    minor = int(whole) * scale + int(fraction.ljust(places, "0") or "0")
    return -minor if negative else minor
