"""Versioned schema migrations (Alembic), one independent branch per package.

Each of `node`, `federation`, `connectors` and `ledger` keeps its revisions in its own
`migrations/` folder with a branch label equal to the package name, so packages evolve their
tables without touching each other's history. `upgrade` brings every branch to its head; several
replicas starting at once are serialised by a lock (PostgreSQL advisory lock, SQLite write lock).
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from node.db.engine import write_transaction

MIGRATION_BRANCHES: tuple[str, ...] = ("node", "federation", "connectors", "ledger")
_ROOT = Path(__file__).resolve().parent.parent.parent
_ADVISORY_LOCK_ID = 0x63706E6F6465  # "cpnode"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_ROOT / "node" / "migrations"))
    cfg.set_main_option("path_separator", "os")
    locations = [_ROOT / branch / "migrations" / "versions" for branch in MIGRATION_BRANCHES]
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations if p.is_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revisions() -> dict[str, str]:
    """The head revision of each branch shipped with this version of cpnode."""
    script = ScriptDirectory.from_config(_config())
    heads: dict[str, str] = {}
    for rev in script.get_revisions("heads"):
        assert rev is not None
        for label in rev.branch_labels or {_branch_of(script, rev.revision)}:
            heads[label] = rev.revision
    return heads


def _branch_of(script: ScriptDirectory, revision: str) -> str:
    for rev in script.iterate_revisions(revision, "base"):
        if rev.branch_labels:
            return next(iter(rev.branch_labels))
    return "?"


def schema_versions(engine: Engine) -> dict[str, str | None]:
    """The revision each branch of this database is at (None for a branch never applied)."""
    script = ScriptDirectory.from_config(_config())
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    result: dict[str, str | None] = dict.fromkeys(MIGRATION_BRANCHES)
    for revision in current:
        result[_branch_of(script, revision)] = revision
    return result


def upgrade(engine: Engine) -> None:
    """Apply every pending migration of every branch, under a cross-process lock."""
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        command.upgrade(_config(conn), "heads")
