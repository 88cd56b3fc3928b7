"""`cpnode express`: run the data express beside a pool (the relay that moves state files between
pools' storage endpoints), with its control API for the node.

    cpnode express --listen 127.0.0.1:8790 --token-file express.token [--state-file express-jobs.json]

The token file holds the control API's bearer token (created, mode 0600, if missing). Jobs are kept
in the state file, so a restarted express resumes them. Prints `cpnode express listening at URL`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from node.cli.commands import add_command
from node.cli.common import CliError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode express`."""
    parser = add_command(
        commands, "express", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="control API address")
    parser.add_argument("--token-file", type=Path, required=True, help="file holding the control API token")
    parser.add_argument(
        "--state-file", type=Path, default=Path("express-jobs.json"), help="where jobs are kept (mode 0600)"
    )
    parser.add_argument(
        "--max-buffer-mib",
        type=int,
        default=1024,
        help="relay memory for chunk buffers across running jobs (workers × chunk size each)",
    )
    parser.set_defaults(handler=run_express)


def run_express(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    import logging

    from connectors.express.service import serve_express
    from connectors.express.store import StateFileError
    from connectors.serving import read_or_create_token

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CliError(f"--listen must be HOST:PORT, got {args.listen!r}", exit_code=2)
    if args.max_buffer_mib < 1:
        raise CliError("--max-buffer-mib must be at least 1", exit_code=2)
    try:
        token = read_or_create_token(args.token_file, "--token-file")
    except (OSError, ValueError) as exc:
        raise CliError(str(exc), exit_code=2) from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(
            serve_express(host.strip("[]"), int(port), token, args.state_file, args.max_buffer_mib << 20)
        )
    except StateFileError as exc:
        raise CliError(str(exc), exit_code=1) from None
    return 0
