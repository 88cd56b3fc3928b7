"""`cpnode run`: serve until SIGINT or SIGTERM, then shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from node.cli.common import CliError, add_config_argument, settings_from_args
from node.logs import configure_logging
from node.roles import ROLES, parse_roles
from node.service import NodeServer, NodeStartError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode run`."""
    parser = commands.add_parser(
        "run",
        help="serve the node until interrupted",
        description="Serve the node (HTTP API, federation, jobs) until SIGINT or SIGTERM.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--roles",
        default=None,
        help=f"comma-separated roles to run in this process (default: all of {','.join(ROLES)})",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="log format (default: [logging] format in the config)",
    )
    parser.set_defaults(handler=run)


async def serve(server: NodeServer) -> None:
    """Start `server`, announce its URL on stdout, and stop it on SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await server.start()
    sys.stdout.write(f"cpnode {server.settings.node.name} listening on {url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()
        sys.stdout.write(f"cpnode {server.settings.node.name} stopped\n")
        sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    """Handler of `cpnode run`."""
    settings = settings_from_args(args)
    try:
        roles = parse_roles(args.roles)
    except ValueError as exc:
        raise CliError(f"--roles: {exc}", exit_code=2) from None
    configure_logging(args.log_format or settings.logging.format, settings.logging.level)
    try:
        asyncio.run(serve(NodeServer(settings, roles)))
    except NodeStartError as exc:
        raise CliError(f"cannot start: {exc}") from None
    return 0
