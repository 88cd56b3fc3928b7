"""The database layer: engines, migrations and write transactions on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import make_engine, schema_versions, upgrade, write_transaction
from node.db.migrate import head_revisions


def test_upgrade_brings_every_branch_to_its_head(engine: Engine) -> None:
    """After `upgrade`, each shipped branch is at its head revision."""
    versions = schema_versions(engine)
    for branch, head in head_revisions().items():
        assert versions[branch] == head


def test_upgrade_is_idempotent(db_url: str) -> None:
    """Running migrations twice changes nothing and does not fail."""
    engine = make_engine(db_url)
    upgrade(engine)
    first = schema_versions(engine)
    upgrade(engine)
    assert schema_versions(engine) == first
    engine.dispose()


def test_write_transaction_rolls_back_on_error(engine: Engine) -> None:
    """A failed write transaction leaves nothing behind."""
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                sa.text("INSERT INTO scheduler_leases VALUES ('j', 'h', 1, 2)"),
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM scheduler_leases")).scalar_one() == 0
