"""`cpnode run`: serve until SIGINT or SIGTERM, then shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from node.cli.commands import add_command
from node.cli.common import CliError, add_config_argument, settings_from_args
from node.roles import OPTIONAL_ROLES, ROLES, parse_roles

if TYPE_CHECKING:
    from node.service import NodeServer

log = logging.getLogger("cpnode.reload")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode run`."""
    parser = add_command(
        commands,
        "run",
        description="Serve the node (HTTP API, federation, jobs) until SIGINT or SIGTERM.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--roles",
        default=None,
        help=f"comma-separated roles to run in this process (default: all of {','.join(ROLES)}; "
        f"also known: {','.join(OPTIONAL_ROLES)}, which runs a supervisor)",
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
    reloads: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = asyncio.create_task(_reload(server))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    url = await server.start()
    logging.getLogger("cpnode.run").info("serving on %s, event loop %s", url, loop_name(loop))
    settle_startup_objects()
    sys.stdout.write(f"cpnode {server.settings.node.name} listening on {url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()
        sys.stdout.write(f"cpnode {server.settings.node.name} stopped\n")
        sys.stdout.flush()


def settle_startup_objects() -> None:
    """Collect once, then move every object alive after startup (modules, settings, routes, the
    components) out of the cyclic garbage collector's sight (`gc.freeze`): they live as long as
    the process, and each full collection under load would otherwise walk all of them again while
    the event loop waits (about 40 ms a pass on a trading node). Reference counting still frees
    them; only a frozen object that later ends up in a reference cycle (an old component a config
    reload replaced, say) stays in memory."""
    gc.collect()
    gc.freeze()


def run_on_loop(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run `main` to its end on a new event loop of the kind `http.event_loop` names: "uvloop" (a
    CliError when it is not installed) or "asyncio", the standard library's."""
    if event_loop == "asyncio":
        asyncio.run(main)
        return
    try:
        import uvloop
    except ImportError:
        main.close()
        raise CliError(
            'http.event_loop is "uvloop" but uvloop is not installed: install it, or set '
            'http.event_loop = "asyncio" (CPNODE_HTTP_EVENT_LOOP=asyncio)'
        ) from None
    uvloop.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """The kind of event loop `loop` is: "uvloop" or "asyncio"."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def _reload(server: NodeServer) -> None:
    """SIGHUP: apply the config file again; a bad file is logged and changes nothing."""
    from node.config import ConfigError

    try:
        await server.reload()
    except (ConfigError, ValueError) as exc:
        log.error("config not reloaded, nothing changed: %s", exc)


def run(args: argparse.Namespace) -> int:
    """Handler of `cpnode run`."""
    # The service (aiohttp, the database layer, every component) is loaded to run, not for --help.
    from node.logs import configure_logging
    from node.service import NodeServer, NodeStartError

    settings = settings_from_args(args)
    try:
        roles = parse_roles(args.roles)
    except ValueError as exc:
        raise CliError(f"--roles: {exc}", exit_code=2) from None
    configure_logging(
        args.log_format or settings.logging.format, settings.logging.level, settings.logging.access
    )
    try:
        run_on_loop(
            serve(NodeServer(settings, roles, config_path=args.config.resolve())), settings.http.event_loop
        )
    except NodeStartError as exc:
        raise CliError(f"cannot start: {exc}") from None
    return 0
