"""The ledger's storage edge: SQLAlchemy Core on an Engine the node passes in (SQLite or PostgreSQL)."""
