"""Versioned schema migrations (Alembic), one independent branch per package.

Each of `node`, `federation`, `connectors` and `ledger` keeps its revisions in its own
`migrations/` folder with a branch label equal to the package name, so packages evolve their
tables without touching each other's history. `upgrade` brings every branch to its head; several
replicas starting at once are serialised by a lock (PostgreSQL advisory lock, SQLite write lock).
Alembic is imported only when it has work: a database already at the shipped heads is left as it
is without it (node.db.revisions).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from node.db.engine import write_transaction
from node.db.revisions import MIGRATION_BRANCHES, ROOT, at_shipped_heads, version_dirs

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = ["MIGRATION_BRANCHES", "head_revisions", "schema_versions", "upgrade"]

_ADVISORY_LOCK_ID = 0x63706E6F6465  # "cpnode"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "node" / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in version_dirs()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revisions() -> dict[str, str]:
    """The head revision of each branch shipped with this version of cpnode."""
    script = _scripts()
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
    from alembic.runtime.migration import MigrationContext

    script = _scripts()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    result: dict[str, str | None] = dict.fromkeys(MIGRATION_BRANCHES)
    for revision in current:
        result[_branch_of(script, revision)] = revision
    return result


def upgrade(engine: Engine) -> None:
    """Apply every pending migration of every branch, under a cross-process lock; a database at
    a revision this version does not ship is refused (Alembic's "Can't locate revision")."""
    if at_shipped_heads(engine):
        return
    from alembic import command

    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        command.upgrade(_config(conn), "heads")
