"""Helpers shared by every `cpnode` subcommand: config loading, JSON output, errors, tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.runfile import CONFIG_ENV, DEFAULT_CONFIG_NAME

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from node.config import Settings

# Loaded by the functions that use them, not here: `cpnode --help` and every command's `--help`
# import this module, and should not pay for pydantic, the config models or rich.

Handler = Callable[[argparse.Namespace], int]
Subcommands = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A failure to report to the operator as one message and a non-zero exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--config PATH` (default: $CPNODE_CONFIG or ./node.toml)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_NAME)),
        help="path to node.toml (default: $CPNODE_CONFIG or ./node.toml)",
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--json` for machine-readable output."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Load the config named by `--config`; a bad config becomes exit code 2 with the path named."""
    from node.config import ConfigError, load_settings

    try:
        return load_settings(args.config)
    except ConfigError as exc:
        raise CliError(str(exc), exit_code=2) from None


@contextmanager
def node_database(settings: Settings) -> Iterator[Engine]:
    """The node's database for one command, reachable and migrated; CliError saying why if not."""
    # The service loads every component and the database layer: only the commands that need them pay.
    from node.db import DatabaseError
    from node.service import open_database

    try:
        engine = open_database(settings)
    except DatabaseError as exc:
        raise CliError(str(exc)) from None
    try:
        yield engine
    finally:
        engine.dispose()


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def console() -> Console:
    """A console for human-readable output on stdout (no colour when not a terminal)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a table with the given column headers."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(table)


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """Print `name: value` lines aligned on the colon."""
    width = max((len(name) for name, _ in fields), default=0)
    out = console()
    for name, value in fields:
        out.print(f"{name.ljust(width)} : {'' if value is None else value}", markup=False)
