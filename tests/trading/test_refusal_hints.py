"""`cpnode orders place` explains a refused order in the operator's terms: a credit limit (which
defaults to 0) with the command the seller runs to raise it, and a consumer short of funds with the
amounts in major units."""

from __future__ import annotations

from pathlib import Path

from tests.support.samples import place_args
from tests.support.trading import PRICE, market, run_cli


async def test_credit_limit_refusal_says_the_default_and_the_fix(tmp_path: Path) -> None:
    """With no credit from the seller, the refusal names the amount needed and `partners update
    beijing --credit-limit` on the seller's node."""
    async with market(tmp_path, credit_limit=0) as m:
        code, _out, err = await run_cli(m, *place_args())
    assert code == 1
    assert "credit_limit_exceeded" in err
    assert "defaults to 0" in err
    assert f"needs {PRICE // 100:,}.00 CNY of credit" in err
    assert "cpnode partners update beijing --credit-limit N" in err


async def test_insufficient_funds_refusal_shows_the_amounts(tmp_path: Path) -> None:
    """A consumer with 50.00 CNY ordering 100.00 CNY is told both amounts and how to deposit."""
    async with market(tmp_path, deposit=5_000) as m:
        code, _out, err = await run_cli(m, *place_args())
    assert code == 1
    assert "insufficient_funds" in err
    assert f"the order needs {PRICE // 100:,}.00 CNY; alice has 50.00 CNY available" in err
    assert "cpnode consumers deposit alice --amount N" in err
