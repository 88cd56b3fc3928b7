"""Fixtures for the statements tests: a node key and a ledger with November 2026 in it."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from tests.statements.support import fill_november


@pytest.fixture(name="key")
def fixture_key() -> SigningKey:
    """A fresh Ed25519 node key (never committed)."""
    return SigningKey.generate()


@pytest.fixture(name="november")
def fixture_november(engine: Engine) -> Engine:
    """The engine (SQLite, then PostgreSQL) with the accounts and transfers of `fill_november`."""
    fill_november(engine)
    return engine
