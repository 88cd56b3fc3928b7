"""`cpnode reload`: apply a changed config file to the running node, and say what needs a restart."""

from __future__ import annotations

import argparse

from node.cli.commands import add_command
from node.cli.common import (
    add_handler,
    print_fields,
    print_json,
    settings_from_args,
)
from node.cli.node_api import call


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode reload`."""
    parser = add_command(
        commands,
        "reload",
        description="Ask the running node to read its config file again (as SIGHUP does). The logging "
        "level, [[partners]] (URLs, keys, agreements and credit limits) and [[offers]] apply at once; "
        "other changed keys are listed as needing a restart and keep their loaded values. A file that "
        "does not validate changes nothing.",
    )
    add_handler(parser, run)


def run(args: argparse.Namespace) -> int:
    """Handler of `cpnode reload`."""
    result = call(settings_from_args(args), "POST", "/api/v1/reload", {})
    if args.json:
        print_json(result)
        return 0
    print_fields(
        [
            ("applied", ", ".join(result["applied"]) or "nothing changed that can be applied"),
            ("needs a restart", ", ".join(result["restart_needed"]) or "nothing"),
        ]
    )
    return 0
