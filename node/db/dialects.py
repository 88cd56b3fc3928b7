"""Statements whose SQL differs between the node's two databases (PostgreSQL and SQLite)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql


def dialect_insert(bind: Engine | Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for `table` in the bind's dialect: one that has `on_conflict_do_nothing` and
    `on_conflict_do_update` (PostgreSQL's and SQLite's `INSERT … ON CONFLICT`)."""
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # loaded only where a PostgreSQL URL is used

        return postgresql.insert(table)
    return sqlite.insert(table)
