"""Start real nodes for tests: each with its own key, config and database, on 127.0.0.1 port 0.

- `make_node_dir(base, name, db_url=None, extra_toml="")` runs `cpnode init` and returns node.toml.
- `running_node(config)` serves a node in this process (same event loop as the test).
- `NodeProcess(config).start()` (from node.launcher) runs `cpnode run` as a real subprocess;
  `start_all(processes)` starts several side by side, `stop_all` stops them so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa

from node.config import load_settings
from node.launcher import NodeProcess, start_all, stop_all
from node.roles import ALL_ROLES
from node.service import NodeServer
from tests.support.cli import cpnode
from tests.support.databases import migrated_sqlite

__all__ = ["NodeProcess", "make_node_dir", "offer_entry", "running_node", "start_all", "stop_all"]


def make_node_dir(
    base: Path,
    name: str,
    *,
    db_url: str | None = None,
    extra_toml: str = "",
    operator: str = "Test Operator",
    region: str = "Testville",
    migrated: bool = True,
) -> Path:
    """Create a node folder with `cpnode init` (port 0) and return its node.toml path. A SQLite
    database not there yet is a copy of one already migrated, unless `migrated` is False: each node
    started on an empty one ran every migration first (a quarter of a `cpnode run`'s CPU until it
    listens), which the tests of migrating a fresh database keep doing."""
    directory = base / name
    args = ["init", str(directory), "--name", name, "--operator", operator, "--region", region, "--port", "0"]
    if db_url:
        args += ["--db", db_url]
    done = cpnode(*args)
    if done.code != 0:
        raise RuntimeError(f"cpnode init {name} failed with exit code {done.code}: {done.output}")
    config = directory / "node.toml"
    database = sa.make_url(load_settings(config, environ={}).database_url)
    if migrated and database.get_backend_name() == "sqlite" and database.database:
        path = Path(database.database)
        if not path.exists():
            migrated_sqlite(path)
    if extra_toml:
        with config.open("a", encoding="utf-8") as handle:
            handle.write("\n" + extra_toml.strip() + "\n")
    return config


@asynccontextmanager
async def running_node(config: Path, roles: frozenset[str] = ALL_ROLES) -> AsyncIterator[NodeServer]:
    """Serve the node of `config` in this event loop until the block ends."""
    server = NodeServer(load_settings(config, environ={}), roles)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def offer_entry(
    offer_id: str,
    region: str,
    free_units: int,
    price: int,
    *,
    pool: str = "pool-a",
    networks: str = "[]",
    tags: str = '["gpu"]',
) -> str:
    """One `[[offers]]` entry of an A100 ×8 flavor in CNY (the one offer shape the tests use)."""
    return f"""
[[offers]]
id = "{offer_id}"
pool = "{pool}"
region = "{region}"
chip_vendor = "nvidia"
chip_model = "A100"
chips_per_unit = 8
cpus = 64
memory_mib = 524288
storage_gib = 2000
free_units = {free_units}
price_per_unit_hour = {price}
currency = "CNY"
networks = {networks}
tags = {tags}
"""
