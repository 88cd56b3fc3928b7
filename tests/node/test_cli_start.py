"""`cpnode` starts light: `--version`, `--help` and commands that only read the config and call the
running node import neither aiohttp nor SQLAlchemy, and the light command table answers `--help`
exactly as the full parser does."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.main import build_parser
from tests.support.nodes import make_node_dir

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
