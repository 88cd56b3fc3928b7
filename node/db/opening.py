"""Opening the configured database the way the node does: reachable, then migrated.

The node's start and every command that reads or writes the database call this, and import no more
than the database layer for it (not the HTTP service or the components).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.db.engine import check_database, make_engine
from node.db.migrate import upgrade

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import Settings


def open_database(settings: Settings) -> Engine:
    """An engine for the configured database, checked reachable and migrated to the current schema."""
    engine = make_engine(
        settings.database_url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        pool_size=settings.database.pool_size,
        threads=settings.database.threads,
        idle_in_transaction_timeout_ms=int(settings.database.idle_in_transaction_timeout_s * 1000),
    )
    try:
        check_database(engine)
        upgrade(engine)
    except Exception:
        engine.dispose()
        raise
    return engine
