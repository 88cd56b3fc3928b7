"""The node's database: engine creation (SQLite or PostgreSQL), write transactions, migrations,
and opening the configured one (`open_database`)."""

from node.db.engine import (
    DatabaseError,
    check_database,
    database_unavailable,
    dispose_when_idle,
    log_failure,
    make_engine,
    write_transaction,
)
from node.db.migrate import MIGRATION_BRANCHES, schema_versions, upgrade
from node.db.opening import open_database
from node.db.threads import in_thread

__all__ = [
    "MIGRATION_BRANCHES",
    "DatabaseError",
    "check_database",
    "database_unavailable",
    "dispose_when_idle",
    "in_thread",
    "log_failure",
    "make_engine",
    "open_database",
    "schema_versions",
    "upgrade",
    "write_transaction",
]
