"""A database that goes away for a moment is the database's failure, not the request's: a node answers
503 `database_unavailable` (with Retry-After) and logs one line, never a 500 with a traceback, and
serves again as soon as the database is back; background work logs it the same way. Found by the
chaos run, where every cut of the database connections gave tracebacks in every process."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
import sqlalchemy as sa

from federation import store as federation_store
from federation.sync import sync_partner
from node.config import load_settings
from node.db import database_unavailable
from node.db import opening as opening_module
from node.metrics import Metrics
from node.scheduler import JobScheduler
from node.service import NodeServer, NodeStartError
from tests.chaos.cluster import via_proxy
from tests.chaos.proxy import TcpProxy
from tests.support.federation import nodes, service_of, trust
from tests.support.nodes import make_node_dir, running_node
from tests.support.trading import engine_of


def _wrapped(orig: BaseException, kind: type[sa.exc.DBAPIError] = sa.exc.OperationalError) -> BaseException:
    """`orig` as SQLAlchemy raises it (wrapped, with the driver error as its cause)."""
    try:
        raise kind("SELECT 1", {}, orig) from orig
    except sa.exc.DBAPIError as exc:
        return exc


def test_database_unavailable_names_outages_only() -> None:
    """Connection failures, a locked SQLite file and an exhausted pool are outages (also when another
    error was raised from one); a constraint violation, a missing table or a plain bug are not."""
    lost = psycopg.OperationalError("server closed the connection unexpectedly\nThis probably means")
    assert database_unavailable(_wrapped(lost)) == "server closed the connection unexpectedly"
    assert database_unavailable(psycopg.InterfaceError("the connection is closed")) is not None
    assert database_unavailable(_wrapped(sqlite3.OperationalError("database is locked"))) is not None
    assert database_unavailable(sa.exc.TimeoutError("QueuePool limit reached")) is not None
    later = RuntimeError("while finishing an order")
    later.__cause__ = _wrapped(lost)
    assert database_unavailable(later) is not None
    duplicate = _wrapped(psycopg.errors.UniqueViolation("duplicate key"), sa.exc.IntegrityError)
    assert database_unavailable(duplicate) is None
    assert database_unavailable(_wrapped(sqlite3.OperationalError("no such table: orders"))) is None
    assert database_unavailable(ValueError("a bug")) is None


async def test_a_failing_job_logs_an_outage_in_one_line(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that fails because the database went away is one warning without a traceback; any
    other failure still logs its traceback."""

    async def outage() -> None:
        raise _wrapped(psycopg.OperationalError("connection refused"))

    async def bug() -> None:
        raise ValueError("a bug")

    scheduler = JobScheduler(engine, "r1", 60, Metrics())
    scheduler.add_interval_job("outage", outage, 30, lease=False)
    scheduler.add_interval_job("bug", bug, 30, lease=False)
    with caplog.at_level(logging.WARNING, logger="cpnode.scheduler"):
        assert await scheduler.run_job("outage") == "error"
        assert await scheduler.run_job("bug") == "error"
    [outage_record, bug_record] = caplog.records
    assert outage_record.levelno == logging.WARNING
    assert outage_record.exc_info is None
    assert "database is unavailable: connection refused" in outage_record.getMessage()
    assert bug_record.exc_info is not None


@pytest.fixture(name="proxy")
async def fixture_proxy(postgres_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of PostgreSQL, and the test schema's URL through it."""
    target = sa.make_url(postgres_url)
    proxy = TcpProxy([(target.host or "127.0.0.1", target.port or 5432)])
    await proxy.start()
    yield proxy, via_proxy(postgres_url, proxy.port)
    await proxy.close()


@pytest.mark.postgres
async def test_requests_during_a_database_outage_answer_503(
    tmp_path: Path, proxy: tuple[TcpProxy, str], caplog: pytest.LogCaptureFixture
) -> None:
    """With every database connection cut and new ones refused, a request that needs the database
    answers 503 database_unavailable with Retry-After and nothing logs a traceback; once the
    database is reachable again the same request answers 200."""
    cut, db_url = proxy
    config = make_node_dir(tmp_path, "alpha", db_url=db_url, extra_toml="[scheduler]\nenabled = false\n")
    server: NodeServer
    async with running_node(config) as server:
        assert server.ctx is not None
        headers = {"Authorization": f"Bearer {server.ctx.admin_token}"}
        async with aiohttp.ClientSession(server.url, headers=headers) as http:
            async with http.get("/api/v1/consumers") as response:
                assert response.status == 200
            cut.refuse(3600)
            assert cut.cut() >= 1  # the pool's warm connection
            with caplog.at_level(logging.WARNING):
                for _ in range(3):
                    async with http.get("/api/v1/consumers") as response:
                        body = await response.json()
                    assert (response.status, body["error"]) == (503, "database_unavailable")
                    assert response.headers["Retry-After"] == "1"
            assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
            assert any("database is unavailable" in r.getMessage() for r in caplog.records)
            cut.allow()
            deadline = time.monotonic() + 10
            while True:
                async with http.get("/api/v1/consumers") as response:
                    if response.status == 200 or time.monotonic() > deadline:
                        break
                await asyncio.sleep(0.05)
            assert response.status == 200


async def test_a_node_losing_its_database_while_starting_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that goes away during the migrations at start-up is a NodeStartError naming it
    (`cpnode run` prints one line and exits 1), as an unreachable one always was; not a traceback."""
    config = make_node_dir(tmp_path, "alpha")

    def upgrade(_engine: sa.Engine) -> None:
        raise _wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))

    monkeypatch.setattr(opening_module, "upgrade", upgrade)
    server = NodeServer(load_settings(config, environ={}))
    with pytest.raises(NodeStartError, match="database became unavailable while migrating its schema"):
        await server.start()


async def test_a_catalog_sync_meeting_a_database_outage_leaves_it_to_the_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync that loses our own database half-way raises the database's error to the round's caller
    (whose job logs one line) instead of logging a traceback as the partner's surprise."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (alpha, beta):
        trust(alpha, beta)
        trust(beta, alpha)

        def store_received(*_args: object) -> bool:
            raise _wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))

        monkeypatch.setattr(federation_store, "store_received", store_received)
        partner = federation_store.get_partner(engine_of(alpha), "beta")
        assert partner is not None
        with caplog.at_level(logging.WARNING), pytest.raises(sa.exc.OperationalError):
            await sync_partner(service_of(alpha), partner)
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
