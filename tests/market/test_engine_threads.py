"""The market reads the offers a demand is matched against on its engine's own threads, never on the
event loop's default executor (shared by every engine and every other blocking call)."""

from __future__ import annotations

import time

from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from federation import store
from federation.keys import public_key_text
from federation.partners import Partner
from node.market.view import market_offers
from tests.support.databases import statement_threads


async def test_market_offers_are_read_on_the_engines_threads(engine: Engine) -> None:
    """Every statement reading the merged view (a partner's catalogs included) runs on a `cpnode-db`
    thread of the engine."""
    key = public_key_text(SigningKey.generate().verify_key)
    store.add_partner(engine, Partner("b", ("http://127.0.0.1:9",), key), int(time.time()))
    with statement_threads(engine) as names:
        rows = await market_offers({}, engine, int(time.time()))
    assert rows == []
    assert names, "the view read nothing"
    assert all(name.startswith("cpnode-db") for name in names), names
