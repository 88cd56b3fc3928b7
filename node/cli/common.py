"""Helpers shared by every `cpnode` subcommand: config loading, JSON output, errors, tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from node.runfile import CONFIG_ENV, DEFAULT_CONFIG_NAME

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from node.config import Settings

# Loaded by the functions that use them, not here: `cpnode --help` and every command's `--help`
# import this module, and should not pay for pydantic, the config models or rich.

Handler = Callable[[argparse.Namespace], int]
T = TypeVar("T")
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


def add_handler(
    parser: argparse.ArgumentParser,
    handler: Handler,
    *extras: Callable[[argparse.ArgumentParser], None],
    config: bool = True,
) -> None:
    """Give a (sub)command parser `--config` (unless `config` is False), `--json`, the arguments
    each of `extras` adds (such as `--token`), and its handler."""
    if config:
        add_config_argument(parser)
    add_json_argument(parser)
    for extra in extras:
        extra(parser)
    parser.set_defaults(handler=handler)


def add_handlers(
    handlers: Iterable[tuple[argparse.ArgumentParser, Handler]],
    *extras: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`add_handler` for each (parser, handler) pair, with the same `extras`."""
    for parser, handler in handlers:
        add_handler(parser, handler, *extras)


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type` taking a whole number from `low` to `high` (else exit 2 saying so)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}–{high}, got {value}")
        return value

    return parse


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
    # The database layer alone (not the service and its components): only the commands that need it pay.
    from node.db import DatabaseError, open_database

    try:
        engine = open_database(settings)
    except DatabaseError as exc:
        raise CliError(str(exc)) from None
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def database_from_args(args: argparse.Namespace) -> Iterator[tuple[Settings, Engine]]:
    """The config named by `--config` and its node's database, for one command."""
    settings = settings_from_args(args)
    with node_database(settings) as engine:
        yield settings, engine


def print_output(args: argparse.Namespace, data: T, for_people: Callable[[T], None]) -> int:
    """Print `data` as JSON with `--json`, else `for_people(data)` (tables, fields); exit code 0."""
    if args.json:
        print_json(data)
    else:
        for_people(data)
    return 0


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
