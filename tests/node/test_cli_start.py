"""`cpnode` starts light: `--version`, `--help` and commands that only read the config and call the
running node import neither aiohttp nor SQLAlchemy, the light command table answers `--help`
exactly as the full parser does, and `cpnode run` loads NumPy, Jinja2, zeroconf and the PostgreSQL
dialect only in the processes that use them, when they first use them."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.main import build_parser
from node.launcher import START_TIMEOUT_S, STOP_TIMEOUT_S
from tests.support.cli import cpnode
from tests.support.nodes import make_node_dir
from tests.support.polling import wait_for

HEAVY = ("aiohttp", "sqlalchemy", "node.service", "node.components")
PROBE = """
import json, sys
from node.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported_by(*args: str) -> tuple[int, set[str]]:
    """Run `cpnode ARGS` in a fresh interpreter; its exit code and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["code"] or 0), set(result["modules"])


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        *(
            [command, "--help"]
            for command in (
                "orders",
                "reload",
                "keys",
                "partners",
                "db",
                "plugins",
                "catalog",
                "deploy",
                "run",
                "ledger",
            )
        ),
        ["ledger", "accounts", "--help"],
    ],
)
def test_version_and_help_import_no_http_or_database(args: list[str]) -> None:
    """`cpnode --version`, `--help` and light commands' help load neither aiohttp nor SQLAlchemy."""
    code, modules = imported_by(*args)
    assert code == 0
    assert not [name for name in HEAVY if name in modules]


def test_config_only_command_imports_no_http_or_database(tmp_path: Path) -> None:
    """A command that reads the config and calls the node (`orders list`) imports neither aiohttp nor
    SQLAlchemy, not even to say the node is not running."""
    config = make_node_dir(tmp_path, "alpha")
    code, modules = imported_by("orders", "list", "--config", str(config))
    assert code == 1
    assert not [name for name in HEAVY if name in modules]


def test_light_table_help_equals_the_full_parsers() -> None:
    """`cpnode --help` from the command table alone is identical to the help of the parser built
    from every command's module."""
    assert build_parser("").format_help() == build_parser(None).format_help()


def test_the_ledger_package_loads_its_parts_on_first_use() -> None:
    """`import ledger` imports no submodule; a public name loads the one that defines it, and every
    name in `ledger.__all__` is found where the package's table says."""
    probe = (
        "import json, sys, ledger\n"
        "before = sorted(m for m in sys.modules if m.startswith('ledger.'))\n"
        "kind = ledger.AccountKind\n"
        "print(json.dumps({'before': before, 'sqlalchemy': 'sqlalchemy' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == {"before": [], "sqlalchemy": False}
    import ledger

    assert sorted(ledger.__all__) == sorted(ledger._EXPORTS)
    for name in ledger.__all__:
        module = importlib.import_module(ledger._EXPORTS[name])
        assert getattr(ledger, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = ledger.nothing


@pytest.mark.parametrize("args", [["partners", "list"], ["keys", "show"], ["ledger", "accounts", "list"]])
def test_database_command_imports_no_http_service_or_migrations(tmp_path: Path, args: list[str]) -> None:
    """A command that opens the database loads the database layer but neither aiohttp, the service
    and its components, nor (on SQLite) psycopg; Alembic only the first time, to create the schema."""
    config = make_node_dir(tmp_path, "alpha", migrated=False)
    unwanted = ("aiohttp", "node.service", "node.components", "psycopg")
    for first in (True, False):
        code, modules = imported_by(*args, "--config", str(config))
        assert code == 0
        assert "sqlalchemy" in modules
        assert ("alembic" in modules) is first
        assert not [name for name in unwanted if name in modules]


@pytest.mark.parametrize(
    ("roles", "unused"),
    [
        # A connectors process places no demand, serves no console and runs no discovery.
        ("connectors", ("numpy", "jinja2", "zeroconf", "sqlalchemy.dialects.postgresql")),
        # Every role, console on: NumPy waits for the first demand, Jinja2 for the first console
        # page, zeroconf for discovery.
        (None, ("numpy", "jinja2", "zeroconf", "sqlalchemy.dialects.postgresql")),
    ],
)
def test_run_imports_only_what_its_roles_use(
    tmp_path: Path, roles: str | None, unused: tuple[str, ...]
) -> None:
    """`cpnode run` on SQLite, its schema already up to date, listens and stops without importing
    the libraries its roles do not use (nor Alembic)."""
    config = make_node_dir(tmp_path, "alpha")
    assert cpnode("db", "upgrade", config=config).code == 0
    out = tmp_path / "run.out"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPNODE_")}
    argv = [
        sys.executable,
        "-c",
        PROBE,
        "run",
        "--config",
        str(config),
        *(["--roles", roles] if roles else []),
    ]
    with out.open("w") as stdout:
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, cwd=config.parent, env=env)
    try:
        wait_for(
            lambda: " listening on " in out.read_text() or proc.poll() is not None,
            START_TIMEOUT_S,
            "listening",
        )
        assert proc.poll() is None, out.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    result = json.loads(out.read_text().strip().splitlines()[-1])
    modules = set(result["modules"])
    assert result["code"] == 0
    assert "aiohttp" in modules  # it served
    assert [name for name in (*unused, "alembic") if name in modules] == []


def test_status_reads_an_up_to_date_schema_without_alembic(tmp_path: Path) -> None:
    """`cpnode status` on a database at the shipped heads says so without loading Alembic, nor
    aiohttp or any component (only the stores it reads), and the schema it shows is the one
    `cpnode db status` (Alembic) shows."""
    config = make_node_dir(tmp_path, "alpha")
    assert cpnode("db", "upgrade", config=config).code == 0
    code, modules = imported_by("status", "--config", str(config))
    assert code == 0
    assert "alembic" not in modules
    unwanted = ("aiohttp", "node.service", "node.components")
    assert [name for name in modules if name in unwanted or name.endswith(".component")] == []
    status = cpnode("status", "--json", config=config)
    rows = json.loads(cpnode("db", "status", "--json", config=config).output)
    assert json.loads(status.output)["schema"] == {
        row["branch"]: f"{row['current']} (up to date)" for row in rows
    }
