"""Fixtures shared by the whole suite: databases on both backends; and the hook that marks every
test that starts a process `slow` (helpers live in tests/support/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

import ledger
from node import launcher
from node.db import make_engine
from tests.support.databases import POSTGRES_SKIP_REASON, POSTGRES_URL, MigratedTemplates, fresh_schema
from tests.support.examples import load_profile
from tests.support.ordering import spread_first
from tests.support.processes import uses_processes
from tests.support.session_origins import record as record_session_origins

# Property tests run the `ci` share of their examples unless HYPOTHESIS_PROFILE=thorough
# (tests/support/examples.py).
load_profile()
# An unclosed aiohttp session's warning names where it was created (tests/support/session_origins.py).
record_session_origins()


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 - pytest's hook signature
    """Node processes the tests start are forks of one preloaded interpreter per test process
    (node.forkserver), each a process of its own without the imports' 0.7 s of CPU;
    CPNODE_TEST_FRESH_PROCESSES=1 starts each from a fresh interpreter, as `make demo` does."""
    if os.environ.get("CPNODE_TEST_FRESH_PROCESSES") != "1":
        launcher.launch_preloaded()


@pytest.fixture(autouse=True)
def _fresh_where_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked `fresh_processes` start their node processes from fresh interpreters, so the
    suite runs some multi-node flows exactly as operators start nodes (`cpnode run`)."""
    if request.node.get_closest_marker("fresh_processes") is None:
        yield
        return
    with launcher.fresh_interpreters():
        yield


def pytest_unconfigure(config: pytest.Config) -> None:  # noqa: ARG001 - pytest's hook signature
    """Stop the fork server."""
    launcher.launch_preloaded(False)


@pytest.fixture(name="postgres_url")
def fixture_postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    with fresh_schema() as url:
        yield url


@pytest.fixture(scope="session", name="templates")
def fixture_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    """Databases migrated once per test process, copied for the tests that want a migrated one."""
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.close()


@pytest.fixture(
    name="db_url",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def fixture_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database on each backend: a SQLite file, then a PostgreSQL schema; empty, or for a test
    that uses `engine` a copy of the migrated template (its own database on PostgreSQL)."""
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "node.db"
        yield request.getfixturevalue("templates").sqlite(path) if migrated else f"sqlite:///{path}"
    elif migrated:
        if not POSTGRES_URL:
            pytest.skip(POSTGRES_SKIP_REASON)
        with request.getfixturevalue("templates").postgres() as url:
            yield url
    else:
        yield str(request.getfixturevalue("postgres_url"))


@pytest.fixture(name="engine")
def fixture_engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend (every package's tables at their head revision): `db_url`
    is a copy of a database migrated once per test process."""
    engine = make_engine(db_url)
    yield engine
    # A ledger group committer's thread keeps a PostgreSQL connection between transactions.
    ledger.committer_for(engine).close()
    engine.dispose()


@pytest.fixture(name="db_urls")
def fixture_db_urls(db_url: str) -> Iterator[tuple[str | None, str | None]]:
    """Databases for two nodes on one backend: their own SQLite files, or two PostgreSQL schemas."""
    if db_url.startswith("sqlite"):
        yield None, None
        return
    with fresh_schema("cpnode_second") as second:
        yield db_url, second


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `slow` every test that starts a process (tests/support/processes.py), so `make
    test-fast` (-m "not slow and not postgres") leaves it out without anyone adding the mark; and
    under `--dist worksteal` put the tests marked `long` at the head of the workers' shares
    (tests/support/ordering.py), so that none starts late and sets the end of the run."""
    known: dict[int, bool] = {}
    for item in items:
        if isinstance(item, pytest.Function) and uses_processes(item, known):
            item.add_marker(pytest.mark.slow)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if config.getoption("dist", None) == "worksteal":
        items[:] = spread_first(items, workers, lambda item: item.get_closest_marker("long") is not None)
