"""Fixtures for the ledger's tests: signing keys, a second database for a partner's ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from node.db import make_engine
from tests.support.databases import MigratedTemplates


@pytest.fixture(name="key")
def fixture_key() -> SigningKey:
    """A fresh Ed25519 node key (tests make their own keys; none is ever committed)."""
    return SigningKey.generate()


@pytest.fixture(name="partner_engine")
def fixture_partner_engine(db_url: str, tmp_path: Path, templates: MigratedTemplates) -> Iterator[Engine]:
    """A second, migrated database on the same backend as `engine`: the partner node's ledger."""
    with ExitStack() as stack:
        if db_url.startswith("sqlite"):
            url = templates.sqlite(tmp_path / "partner.db")
        else:
            url = stack.enter_context(templates.postgres())
        engine = make_engine(url)
        stack.callback(engine.dispose)
        yield engine
