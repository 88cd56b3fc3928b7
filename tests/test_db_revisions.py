"""Migrating at start-up without Alembic when there is nothing to do: the shipped heads read from
the revision files are Alembic's, an older database is still migrated, one at a revision this
version does not ship is still refused, and opening an up-to-date database imports no Alembic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine

from node.config import load_settings
from node.db import make_engine, schema_versions, upgrade, write_transaction
from node.db.migrate import _config, head_revisions
from node.db.revisions import _links, at_shipped_heads, shipped_heads, stored_revisions
from tests.support.nodes import make_node_dir

VERSIONS = sa.table("alembic_version", sa.column("version_num"))


def test_shipped_heads_are_alembics() -> None:
    """The heads read from the revision files' lines are the heads Alembic finds."""
    assert shipped_heads() == frozenset(head_revisions().values())


def test_a_revision_file_read_plainly_or_not_at_all() -> None:
    """A file's revision and what it follows are read from plain literals (a merge's tuple too);
    anything else is not known, so Alembic decides."""
    assert _links('revision = "b"\ndown_revision = "a"\n') == ("b", ("a",))
    assert _links('revision: str = "a"\ndown_revision: str | None = None\n') == ("a", ())
    assert _links('revision = "m"\ndown_revision = ("a", "b")\n') == ("m", ("a", "b"))
    assert _links('revision = "b"\ndown_revision = (\n    "a",\n)\n') is None
    assert _links('revision = make_id()\ndown_revision = "a"\n') is None
    assert _links('down_revision = "a"\n') is None


def test_a_database_at_an_older_revision_is_migrated(db_url: str) -> None:
    """A database with the node branch one revision behind (and the others never applied) is not at
    the heads, and `upgrade` brings every branch to its head."""
    engine = make_engine(db_url)
    node_head = head_revisions()["node"]
    previous = ScriptDirectory.from_config(_config()).get_revision(node_head).down_revision
    assert isinstance(previous, str)
    with write_transaction(engine) as conn:
        command.upgrade(_config(conn), previous)
    assert stored_revisions(engine) == frozenset({previous})
    assert not at_shipped_heads(engine)
    upgrade(engine)
    assert schema_versions(engine) == dict(head_revisions())
    assert at_shipped_heads(engine)
    engine.dispose()


def test_a_database_at_a_revision_not_shipped_is_refused(engine: Engine) -> None:
    """A database whose node branch is at a revision this version does not ship (written by a newer
    cpnode) is refused by Alembic as before, and its version table is left as it was."""
    node_head = head_revisions()["node"]
    with write_transaction(engine) as conn:
        conn.execute(
            VERSIONS.update().where(VERSIONS.c.version_num == node_head).values(version_num="node_9999")
        )
    before = stored_revisions(engine)
    assert before is not None
    assert "node_9999" in before
    with pytest.raises(CommandError, match="node_9999"):
        upgrade(engine)
    assert stored_revisions(engine) == before


def test_a_database_without_a_version_table_has_no_stored_revisions(db_url: str) -> None:
    """An empty database records no revision (rather than failing), and is not at the heads."""
    engine = make_engine(db_url)
    assert stored_revisions(engine) is None
    assert not at_shipped_heads(engine)
    engine.dispose()


def test_opening_an_up_to_date_database_imports_no_alembic(tmp_path: Path) -> None:
    """A process that opens a migrated SQLite database imports neither Alembic nor psycopg; one that
    opens an empty one migrates it with Alembic."""
    config = make_node_dir(tmp_path, "alpha", migrated=False)
    probe = (
        "import json, sys\n"
        "from pathlib import Path\nfrom node.config import load_settings\n"
        "from node.db import open_database\n"
        f"open_database(load_settings(Path({str(config)!r}), environ={{}})).dispose()\n"
        "print(json.dumps([m in sys.modules for m in ('alembic', 'psycopg')]))\n"
    )

    def imported() -> list[bool]:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
        )
        result: list[bool] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    settings = load_settings(config, environ={})
    database = Path(sa.make_url(settings.database_url).database or "")
    for leftover in database.parent.glob(database.name + "*"):
        leftover.unlink()  # start from no file at all
    assert imported() == [True, False]
    assert imported() == [False, False]
