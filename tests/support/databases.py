"""Where the PostgreSQL tests run: the URL from the environment, a fresh schema per use, and
databases migrated once per test process then copied for each test that wants a migrated one."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import make_engine, upgrade

POSTGRES_URL = os.environ.get("CPNODE_TEST_POSTGRES_URL", "")
POSTGRES_SKIP_REASON = (
    "PostgreSQL tests need CPNODE_TEST_POSTGRES_URL=postgresql+psycopg://USER@HOST:PORT/DB "
    "(.ci/run sets it when a local PostgreSQL is up)"
)


def with_search_path(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema`."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(prefix: str = "cpnode_test", base_url: str = "") -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new schema with a unique name, dropped afterwards
    (in the database of `base_url`, by default the tests' CPNODE_TEST_POSTGRES_URL)."""
    base_url = base_url or POSTGRES_URL
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(base_url, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


# Drops at once per test process (each holds a connection while it waits for its checkpoint).
DROPPERS = 4


def database_url(name: str) -> str:
    """The URL of database `name` on the PostgreSQL server of CPNODE_TEST_POSTGRES_URL."""
    return sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


class MigratedTemplates:
    """A SQLite file and a PostgreSQL database migrated to every head once per test process (each
    made on first use), copied for each test that wants a migrated database: running the
    migrations took a test a second on SQLite and several on PostgreSQL on a loaded machine,
    copying takes milliseconds (`CREATE DATABASE ... TEMPLATE` on PostgreSQL). A copy is dropped
    in the background once its test is done: DROP DATABASE waits for a checkpoint, seconds when
    other tests keep the server busy, and drops running together share one; `close` waits for
    every drop."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._sqlite: Path | None = None
        self._postgres: str | None = None
        self._admin: sa.Engine | None = None
        self._dropper = ThreadPoolExecutor(max_workers=DROPPERS, thread_name_prefix="drop-database")
        self._drops: list[Future[None]] = []

    def sqlite(self, dest: Path) -> str:
        """The URL of `dest`, a copy of the migrated SQLite template."""
        if self._sqlite is None:
            path = self.workdir / "template.db"
            _migrate(f"sqlite:///{path}")
            self._sqlite = path
        for suffix in ("", "-wal"):  # the engine is disposed, so the log is normally checkpointed away
            source = self._sqlite.with_name(self._sqlite.name + suffix)
            if source.exists():
                shutil.copyfile(source, dest.with_name(dest.name + suffix))
        return f"sqlite:///{dest}"

    def _execute(self, statement: str) -> None:
        if self._admin is None:
            self._admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(sa.text(statement))

    @contextmanager
    def postgres(self) -> Iterator[str]:
        """The URL of a new PostgreSQL database copied from the migrated template, dropped afterwards
        (with any connection the test left open)."""
        if self._postgres is None:
            template = f"cpnode_template_{uuid.uuid4().hex[:12]}"
            self._execute(f'CREATE DATABASE "{template}"')
            try:
                _migrate(database_url(template))
            except BaseException:
                self._execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
                raise
            self._postgres = template
        name = f"cpnode_test_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._postgres}"')
        try:
            yield database_url(name)
        finally:
            self._drops.append(
                self._dropper.submit(self._execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )

    def close(self) -> None:
        """Wait for the copies' drops, then drop the PostgreSQL template if one was made (the SQLite
        one goes with its folder); a drop that failed fails here."""
        self._dropper.shutdown(wait=True)
        for drop in self._drops:
            drop.result()
        if self._postgres is not None:
            self._execute(f'DROP DATABASE IF EXISTS "{self._postgres}" WITH (FORCE)')
            self._postgres = None
        if self._admin is not None:
            self._admin.dispose()
            self._admin = None


@contextmanager
def statement_threads(engine: Engine) -> Iterator[list[str]]:
    """The names of the threads each SQL statement on `engine` runs on, while the block runs."""
    names: list[str] = []

    def seen(*_args: object) -> None:
        names.append(threading.current_thread().name)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        yield names
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)


_PROCESS_TEMPLATES: list[MigratedTemplates] = []  # this process's, made on first use
_PROCESS_TEMPLATES_LOCK = threading.Lock()


def migrated_sqlite(dest: Path) -> str:
    """The URL of `dest`, a copy of a SQLite database migrated once per test process (in a temporary
    folder removed at exit), for helpers outside fixtures (`make_node_dir`)."""
    with _PROCESS_TEMPLATES_LOCK:
        if not _PROCESS_TEMPLATES:
            workdir = Path(tempfile.mkdtemp(prefix="cpnode-templates-"))
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)
            _PROCESS_TEMPLATES.append(MigratedTemplates(workdir))
        return _PROCESS_TEMPLATES[0].sqlite(dest)
