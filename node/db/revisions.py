"""Whether a database's schema is already at the heads this version of cpnode ships, found without
Alembic: the revision files' `revision` and `down_revision` lines, and the database's version table.

Starting a node and every command that opens the database ask this first, so Alembic (a few hundred
ms of imports) loads only when there is something to migrate or refuse; `node.db.migrate` decides
everything else exactly as before. Any file or table this cannot read plainly is "not known": the
caller then lets Alembic look.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

MIGRATION_BRANCHES: tuple[str, ...] = ("node", "federation", "connectors", "ledger")
ROOT = Path(__file__).resolve().parent.parent.parent
VERSION_TABLE = "alembic_version"  # Alembic's default, which node/migrations/env.py keeps

_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


def version_dirs() -> list[Path]:
    """The folders holding each branch's revision files (Alembic's `version_locations`)."""
    folders = (ROOT / branch / "migrations" / "versions" for branch in MIGRATION_BRANCHES)
    return [folder for folder in folders if folder.is_dir()]


def _links(source: str) -> tuple[str, tuple[str, ...]] | None:
    """(revision, the revisions it follows) from a revision file's text; None when they are not
    plain literals on one line each."""
    found: dict[str, object] = {}
    for match in _REVISION_LINE.finditer(source):
        try:
            found.setdefault(match.group(1), ast.literal_eval(match.group(2)))
        except (ValueError, SyntaxError):
            return None
    revision, down = found.get("revision"), found.get("down_revision", ())
    if not isinstance(revision, str):
        return None
    if down is None or isinstance(down, str):
        return revision, (down,) if down else ()
    if isinstance(down, tuple) and all(isinstance(item, str) for item in down):
        return revision, down
    return None


@functools.cache
def shipped_heads() -> frozenset[str] | None:
    """The head revision of every branch, from the revision files; None when one cannot be read."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for folder in version_dirs():
        for path in folder.glob("*.py"):
            if path.name.startswith(("__init__", ".")):  # as Alembic skips them (editors' lock files)
                continue
            try:
                links = _links(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                return None
            if links is None:
                return None
            revisions.add(links[0])
            followed.update(links[1])
    return frozenset(revisions - followed) or None


def shipped_heads_by_branch() -> dict[str, str] | None:
    """Each branch's head revision (by the folder its file is in); None when a file cannot be read
    plainly or a branch has not exactly one head."""
    heads = shipped_heads()
    if heads is None:
        return None
    found: dict[str, list[str]] = {}
    for branch in MIGRATION_BRANCHES:
        folder = ROOT / branch / "migrations" / "versions"
        for path in folder.glob("*.py") if folder.is_dir() else ():
            links = None if path.name.startswith(("__init__", ".")) else _links(path.read_text("utf-8"))
            if links is not None and links[0] in heads:
                found.setdefault(branch, []).append(links[0])
    if sum(map(len, found.values())) != len(heads) or any(len(revs) != 1 for revs in found.values()):
        return None
    return {branch: revs[0] for branch, revs in found.items()}


def stored_revisions(engine: Engine) -> frozenset[str] | None:
    """The revisions the database's version table records; None when it has no such table or it
    cannot be read now (Alembic then says what is wrong, as it always has)."""
    try:
        with engine.connect() as conn:
            table = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
            rows = conn.execute(sa.select(table.c.version_num)).scalars().all()
    except sa.exc.DBAPIError:
        return None
    return frozenset(rows)


def at_shipped_heads(engine: Engine) -> bool:
    """Whether every branch of the database is at the head this version ships (nothing to apply)."""
    heads = shipped_heads()
    return heads is not None and stored_revisions(engine) == heads
