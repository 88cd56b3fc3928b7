"""`cpnode gateway`: turn this host into a managed pool of a node (the compute gateway, 算力网关).

It runs the `local` pool as an out-of-process plugin (the remote plugin protocol) and registers it
with the node named in the registration code (`cpnode pools gateway-code NAME` on the node), then
heartbeats until stopped. After the first registration the gateway keeps a token in
`ROOT/gateway.json`, so `cpnode gateway --root ROOT` alone brings it back after a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from node.cli.commands import add_command
from node.cli.common import CliError

if TYPE_CHECKING:  # the pool and its service load only when the command runs
    from connectors.pools.local import LocalPool
    from connectors.remote.gateway import GatewayState
    from connectors.remote.server import Registrar

STATE_FILE = "gateway.json"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode gateway`."""
    parser = add_command(
        commands,
        "gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--code", help="registration code from `cpnode pools gateway-code NAME` (first run)")
    parser.add_argument("--root", type=Path, required=True, help="the pool's directory (instances, state)")
    parser.add_argument("--node", help="the node's URL (default: the one named in the code)")
    parser.add_argument("--slots", type=int, help="capacity slots (default: one per CPU)")
    parser.add_argument(
        "--runtime",
        action="append",
        default=[],
        metavar="FRAMEWORK=ARGV",
        help="map a framework's images to a local runtime, e.g. pytorch='python3' (repeatable)",
    )
    parser.add_argument(
        "--input-root", action="append", default=[], type=Path, help="directory file:// inputs may come from"
    )
    parser.add_argument("--price-minor-per-slot-hour", type=int, default=100)
    parser.add_argument("--region", default="local")
    parser.add_argument("--city", default="110000", help="GB/T 2260 city code of this host")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the plugin service and storage listen on"
    )
    parser.add_argument("--port", type=int, default=0, help="port of the plugin service (default: any free)")
    parser.add_argument("--public-url", help="the plugin service's URL as the node reaches it")
    parser.set_defaults(handler=run_gateway)


def run_gateway(args: argparse.Namespace) -> int:
    """Serve the pool until SIGINT/SIGTERM; exit 1 if the node refuses the registration."""
    import logging

    from connectors.errors import ConnectorError
    from connectors.pools.local import LocalPool
    from connectors.remote.gateway import GatewayState, gateway_registrar, load_state
    from connectors.sandbox import InputPolicy, parse_runtimes

    state_path = args.root / STATE_FILE
    state = _state(args, load_state(state_path))
    runtimes: dict[str, str] = {}
    for item in args.runtime:
        name, sep, argv = item.partition("=")
        if not sep or not argv:
            raise CliError(f"--runtime must be FRAMEWORK=ARGV, got {item!r}", exit_code=2)
        runtimes[name] = argv
    try:
        pool = LocalPool(
            state.pool,
            args.root,
            slots=args.slots,
            region=args.region,
            city=args.city,
            price_minor_per_slot_hour=args.price_minor_per_slot_hour,
            storage_host=args.host,
            runtimes=parse_runtimes(runtimes),
            inputs=InputPolicy(input_roots=tuple(args.input_root)),
        )
    except ConnectorError as exc:
        raise CliError(str(exc), exit_code=2) from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    registrar = gateway_registrar(state_path, GatewayState(state.pool, state.node_url), args.code)
    return asyncio.run(_serve(pool, state.node_url, registrar, args))


def _state(args: argparse.Namespace, saved: GatewayState | None) -> GatewayState:
    """Pool and node from the code (unverified: the node checks it), else from the saved state."""
    from connectors.remote.gateway import GatewayState
    from node.http.errors import ApiError
    from node.pools.gateway import read_code

    if args.code:
        try:
            document = read_code(args.code)
        except ApiError as exc:
            raise CliError(f"--code: {exc}", exit_code=2) from None
        node_url = args.node or str(document.get("node_url") or "")
        if not node_url:
            raise CliError("the code names no node URL; give --node", exit_code=2)
        return GatewayState(str(document.get("pool")), node_url)
    if saved is None:
        raise CliError(f"no --code and no earlier registration in {args.root}; give --code", exit_code=2)
    return GatewayState(saved.pool, args.node or saved.node_url, saved.gateway_token)


async def _serve(pool: LocalPool, node_url: str, registrar: Registrar, args: argparse.Namespace) -> int:
    from connectors.remote.server import PluginService, RegistrationRefused
    from connectors.serving import wait_for_signal

    service = PluginService(
        pool, node_url, host=args.host, port=args.port, public_url=args.public_url, register=registrar
    )
    try:
        url = await service.start(register_first=True)
    except RegistrationRefused as exc:
        sys.stderr.write(f"cpnode gateway: the node at {node_url} refused pool {pool.name}: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"cpnode gateway: cannot serve or reach the node at {node_url}: {exc}\n")
        return 1
    print(f"cpnode gateway: pool {pool.name} serving at {url}, registered with {node_url}", flush=True)
    try:
        await wait_for_signal()
    finally:
        await service.close()
    return 0
