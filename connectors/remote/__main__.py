"""Run any installed compute plugin out of process: `python -m connectors.remote ENTRY_POINT NAME ...`.

It serves the plugin over HTTP on 127.0.0.1, registers with the node at `--node` using the admin
token in `--admin-token-file`, and heartbeats until stopped (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from connectors.contract import ComputePlugin
from connectors.errors import ConnectorError
from connectors.loading import build
from connectors.remote.server import PluginService
from connectors.serving import wait_for_signal


def _options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option must be KEY=VALUE, got {pair!r}")
        options[key] = value
    return options


async def _run(args: argparse.Namespace) -> int:
    try:
        plugin = build(args.entry_point, args.name, _options(args.option))
    except ConnectorError as exc:
        sys.stderr.write(f"cannot load plugin: {exc}\n")
        return 2
    if not isinstance(plugin, ComputePlugin):
        sys.stderr.write("only compute plugins run out of process\n")
        return 2
    service = PluginService(plugin, args.node, args.admin_token, port=args.port)
    url = await service.start()
    print(f"plugin {args.name} serving at {url}", flush=True)
    try:
        await wait_for_signal()
    finally:
        await service.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve the plugin until a signal."""
    parser = argparse.ArgumentParser(prog="python -m connectors.remote", description=__doc__)
    parser.add_argument("entry_point", help="plugin entry point in cpnode.connectors, e.g. local")
    parser.add_argument("name", help="pool name to register under")
    parser.add_argument("--node", required=True, help="the node's base URL")
    parser.add_argument("--admin-token-file", required=True, help="file holding the node's admin token")
    parser.add_argument("--port", type=int, default=0, help="port to serve on (default: any free port)")
    parser.add_argument("--option", action="append", default=[], help="plugin option KEY=VALUE (repeatable)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser.parse_args(argv)
    args.admin_token = Path(args.admin_token_file).read_text(encoding="utf-8").strip()
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
