"""Entry point of `cpnode`: builds the parser from the command modules and runs one command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from node import __version__
from node.cli.common import CliError

# Each module defines `register(commands)`, adding its subcommands with `set_defaults(handler=...)`.
COMMAND_MODULES: tuple[str, ...] = (
    "node.cli.init_cmd",
    "node.cli.run_cmd",
    "node.cli.status_cmd",
    "node.cli.db_cmd",
    "node.cli.plan_cmd",
    "node.cli.deploy_cmd",
    "node.cli.plugins_cmd",
    "node.cli.pools_cmd",
    "node.cli.keys_cmd",
    "node.cli.partners_cmd",
    "node.cli.catalog_cmd",
    "node.cli.ledger_cmd",
    "node.cli.consumers_cmd",
    "node.cli.orders_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The full `cpnode` argument parser."""
    parser = argparse.ArgumentParser(
        prog="cpnode",
        description="A node of the Internet of computing power.",
    )
    parser.add_argument("--version", action="version", version=f"cpnode {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cpnode` with `argv` and return the process exit code."""
    parser = build_parser()
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
