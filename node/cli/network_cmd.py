"""`cpnode network`: the running node's network view (算网感知) — every network plugin's topology
merged, with the round trips measured to partners — and the best path between two sites."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

from node.cli.commands import add_command
from node.cli.common import (
    add_handlers,
    console,
    print_json,
    print_output,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call
from node.money import format_rate


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode network`."""
    parser = add_command(commands, "network", description="The running node's merged network view.")
    sub = parser.add_subparsers(title="network commands", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="sites and links: free bandwidth, latency, cost; plugins that failed")
    show.add_argument("--refresh", action="store_true", help="read every network plugin's topology now first")
    path = sub.add_parser("path", help="the best path between two sites: hops, latency, free bandwidth, cost")
    path.add_argument("src", help="the site the path starts at")
    path.add_argument("dst", help="the site the path ends at")
    path.add_argument("--min-mbps", type=int, default=0, metavar="N", help="only links with N Mbit/s free")
    add_handlers([(show, run_show), (path, run_path)])


def print_view(view: dict[str, Any]) -> None:
    """Print a view: its sites, its links as a table, and the plugins that could not be read."""
    out = console()
    out.print(f"{len(view['sites'])} sites: {', '.join(view['sites'])}", markup=False)
    if view.get("site"):
        out.print(f"this node's site: {view['site']}", markup=False)
    rows = [
        [
            link["network"],
            link["id"],
            f"{link['a']} – {link['b']}",
            f"{link['latency_us'] / 1000:g} ms",
            f"{link['free_mbps']} / {link['bandwidth_mbps']} Mbit/s" if link["bandwidth_mbps"] else "unknown",
            format_rate(link["cost_minor_per_gb"], view["currency"], "GB"),
            "up" if link["up"] else "DOWN",
        ]
        for link in view["links"]
    ]
    print_table(None, ["network", "link", "sites", "latency", "free", "cost", "state"], rows)
    for error in view.get("errors", []):
        out.print(f"not read: {error['network']}: {error['message']}", markup=False)


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode network show`."""
    settings = settings_from_args(args)
    if args.refresh:
        view = call(settings, "POST", "/api/v1/network/refresh", {})
    else:
        view = call(settings, "GET", "/api/v1/network")
    return print_output(args, view, print_view)


def run_path(args: argparse.Namespace) -> int:
    """Handler of `cpnode network path`."""
    settings = settings_from_args(args)
    query = urlencode({"src": args.src, "dst": args.dst, "min_mbps": args.min_mbps})
    route = call(settings, "GET", f"/api/v1/network/path?{query}")
    if args.json:
        print_json(route)
    else:
        console().print(
            f"{' → '.join(route['hops'])}: {route['latency_ms']:g} ms, {route['free_mbps']} Mbit/s free, "
            f"{format_rate(route['cost_minor_per_gb'], route['currency'], 'GB')}",
            markup=False,
        )
    return 0
