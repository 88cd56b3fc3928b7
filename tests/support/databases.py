"""Where the PostgreSQL tests run: the URL from the environment, and a fresh schema per use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

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
def fresh_schema(prefix: str = "cpnode_test") -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new schema with a unique name, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(POSTGRES_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
