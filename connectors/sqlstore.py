"""What connectors' stores share at the SQL edge: the node's engine, writes marked as writes, and an
`INSERT … ON CONFLICT` in the engine's dialect.

`node.db.dialects.dialect_insert` does the same for the node; connectors may not import node (the
dependency rule), so its stores keep this small copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql


class EngineStore:
    """Base of a store over a node's engine: `_insert(table)` has `on_conflict_do_update`, and
    `_write()` opens a connection the node's engine routes as a write."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert: Callable[[sa.Table], postgresql.Insert | sqlite.Insert] = sqlite.insert
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql  # loaded only where a PostgreSQL URL is used

            self._insert = postgresql.insert

    def _write(self) -> Connection:
        return self.engine.connect().execution_options(cpnode_write=True)
