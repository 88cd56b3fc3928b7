"""Entry point of `cpnode`: builds the parser from the command table and runs one command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from node import __version__
from node.cli.commands import COMMANDS, add_placeholders

COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(command.module for command in COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `cpnode` argument parser: with only `command`'s module loaded when it names a command,
    every command's module when it is None, and the light table alone otherwise (`--help`,
    `--version`, a mistyped command)."""
    parser = argparse.ArgumentParser(
        prog="cpnode",
        description="A node of the Internet of computing power.",
    )
    parser.add_argument("--version", action="version", version=f"cpnode {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    if command is None:
        for name in COMMAND_MODULES:
            importlib.import_module(name).register(commands)
    elif command in COMMANDS:
        importlib.import_module(COMMANDS[command].module).register(commands)
    else:
        add_placeholders(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cpnode` with `argv` and return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "run":
        # Looking for pydantic plugins scans every installed distribution's entry points (~50 ms, a
        # fifth of a command that reads the config); no command but the node itself could use one.
        # An operator who wants them anyway sets PYDANTIC_DISABLE_PLUGINS to an empty value.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    parser = build_parser(argv[0] if argv else "")
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from node.cli.common import CliError  # the command's module has loaded it already

    try:
        return int(handler(args))
    except CliError as exc:
        sys.stderr.write(f"cpnode: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
