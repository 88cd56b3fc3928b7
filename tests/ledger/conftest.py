"""Fixtures for the ledger's tests: signing keys, a second database for a partner's ledger."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from node.db import make_engine, upgrade


@pytest.fixture(name="key")
def fixture_key() -> SigningKey:
    """A fresh Ed25519 node key (tests make their own keys; none is ever committed)."""
    return SigningKey.generate()


@pytest.fixture(name="partner_engine")
def fixture_partner_engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A second, migrated database on the same backend as `engine`: the partner node's ledger."""
    if db_url.startswith("sqlite"):
        engine = make_engine(f"sqlite:///{tmp_path / 'partner.db'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    base = os.environ["CPNODE_TEST_POSTGRES_URL"]
    schema = f"cpnode_partner_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    engine = make_engine(f"{base}{separator}options=-csearch_path%3D{schema}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
