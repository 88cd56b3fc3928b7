"""Our stored sessions at partners: replicas over one database saving at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine

from federation import store
from federation.partners import Partner

KEY = "ed25519:" + "A" * 43


@pytest.fixture(autouse=True)
def _partner(engine: Engine) -> None:
    """The partner the sessions are at (a session belongs to a pinned partner)."""
    store.add_partner(engine, Partner("shanghai", ("http://127.0.0.1:9",), KEY), 1_000)


def test_concurrent_saves_of_one_partners_session_all_succeed(engine: Engine) -> None:
    """Many saves of the session at one partner at once (replicas logging in together) all succeed,
    and one of them is what is stored, whole."""
    with ThreadPoolExecutor(8) as pool:
        saves = [
            pool.submit(store.save_session, engine, "shanghai", f"token-{i}", f"kid-{i}", 1_000 + i)
            for i in range(64)
        ]
        for save in saves:
            save.result()
    stored = store.get_session(engine, "shanghai")
    assert stored is not None
    token, kid, expires_ts = stored
    i = int(token.removeprefix("token-"))
    assert (kid, expires_ts) == (f"kid-{i}", 1_000 + i)


def test_a_saved_session_replaces_the_one_stored(engine: Engine) -> None:
    """A second save replaces the first; dropping leaves none."""
    store.save_session(engine, "shanghai", "first", "k1", 100)
    store.save_session(engine, "shanghai", "second", "k2", 200)
    assert store.get_session(engine, "shanghai") == ("second", "k2", 200)
    store.drop_session(engine, "shanghai")
    assert store.get_session(engine, "shanghai") is None
