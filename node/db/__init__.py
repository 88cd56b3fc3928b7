"""The node's database: engine creation (SQLite or PostgreSQL), write transactions, migrations."""

from node.db.engine import (
    DatabaseError,
    check_database,
    database_unavailable,
    log_failure,
    make_engine,
    write_transaction,
)
from node.db.migrate import MIGRATION_BRANCHES, schema_versions, upgrade

__all__ = [
    "MIGRATION_BRANCHES",
    "DatabaseError",
    "check_database",
    "database_unavailable",
    "log_failure",
    "make_engine",
    "schema_versions",
    "upgrade",
    "write_transaction",
]
