"""Entry point of `cpnode`: builds the parser from the command modules and runs one command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from node import __version__
from node.cli.common import CliError

# Command → the module that defines it. Each module has `register(commands)`, adding its command
# with `set_defaults(handler=...)`. Only the invoked command's module is imported, so a command
# pays for its own imports alone (`cpnode ledger verify` does not load the HTTP service).
COMMANDS: dict[str, str] = {
    "init": "node.cli.init_cmd",
    "run": "node.cli.run_cmd",
    "status": "node.cli.status_cmd",
    "db": "node.cli.db_cmd",
    "plan": "node.cli.plan_cmd",
    "deploy": "node.cli.deploy_cmd",
    "plugins": "node.cli.plugins_cmd",
    "pools": "node.cli.pools_cmd",
    "gateway": "node.cli.gateway_cmd",
    "keys": "node.cli.keys_cmd",
    "partners": "node.cli.partners_cmd",
    "catalog": "node.cli.catalog_cmd",
    "ledger": "node.cli.ledger_cmd",
    "consumers": "node.cli.consumers_cmd",
    "orders": "node.cli.orders_cmd",
    "market": "node.cli.market_cmd",
}
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `cpnode` argument parser: with only `command`'s module loaded, or every command."""
    parser = argparse.ArgumentParser(
        prog="cpnode",
        description="A node of the Internet of computing power.",
    )
    parser.add_argument("--version", action="version", version=f"cpnode {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cpnode` with `argv` and return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except CliError as exc:
        sys.stderr.write(f"cpnode: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
