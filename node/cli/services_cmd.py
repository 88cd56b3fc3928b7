"""`cpnode services create|list|show|scale|pin|delete|resolve`: inference services of the running node.

    cpnode services create NAME --spec FILE [--replicas N] [--consumer C] [--max-replicas M]
                           [--scale-in-flight X --scale-window S] [--health-path /healthz]
    cpnode services list
    cpnode services show NAME
    cpnode services scale NAME N
    cpnode services pin NAME REPLICA=WEIGHT ...     (WEIGHT 0 drains, `auto` unpins)
    cpnode services delete NAME
    cpnode services resolve NAME [--site SITE]

A service runs the task spec FILE (TOML or JSON, see configs/tasks/echo-replica.toml) as N
replicas, each a task placed through the market on this node's pools or a partner's. Its program
serves HTTP and prints `cpnode-endpoint http://127.0.0.1:PORT` once it listens. Users reach the
service at `/svc/NAME/...` on the node, which steers each request to a replica by latency from the
user's site (header `X-Cpnode-Site`), load, health and pinned weights; `resolve` shows that ranking
with the reasons. With the admin token `create` needs `--consumer`; with `--token-file PATH` (or
$CPNODE_CONSUMER_TOKEN) every command acts as that token's consumer. Every command takes `--json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handlers,
    console,
    print_fields,
    print_json,
    print_output,
    print_table,
    settings_from_args,
)
from node.cli.node_api import add_token_argument, call, consumer_token
from node.cli.tasks_cmd import read_spec

REPLICA_COLUMNS = ["replica", "site", "endpoint", "healthy", "in flight", "weight", "served", "problem"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode services`."""
    parser = add_command(
        commands, "services", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="services commands", metavar="ACTION", required=True)
    create = _named(sub.add_parser("create", help="create a service: its replicas' task spec and count"))
    create.add_argument("--spec", type=Path, required=True, metavar="FILE", help="the replicas' task spec")
    create.add_argument("--replicas", type=int, default=1, help="how many replicas (default 1)")
    create.add_argument("--consumer", help="the consumer it runs for (needed with the admin token)")
    create.add_argument("--max-replicas", type=int, help="the most scale-out may grow it to")
    create.add_argument(
        "--scale-in-flight",
        type=float,
        default=0,
        help="add a replica when in-flight requests per replica stay over this (0: never)",
    )
    create.add_argument("--scale-window", type=float, default=30, metavar="S", help="for this long (s)")
    create.add_argument("--health-path", default="/healthz", help="the replicas' health path")
    listing = sub.add_parser("list", help="services and their replicas")
    show = _named(sub.add_parser("show", help="one service and its replicas' live state"))
    scale = _named(sub.add_parser("scale", help="set how many replicas a service runs"))
    scale.add_argument("replicas", type=int, metavar="N")
    pin = _named(sub.add_parser("pin", help="pin replicas' weights (0 drains, `auto` unpins)"))
    pin.add_argument("weights", nargs="+", metavar="REPLICA=WEIGHT")
    delete = _named(sub.add_parser("delete", help="stop a service's replicas and forget it"))
    resolve = _named(
        sub.add_parser("resolve", help="a service's replicas ranked for a user's site, with reasons")
    )
    resolve.add_argument("--site", help="the user's site (default: the node's)")
    add_handlers(
        [
            (create, run_create),
            (listing, run_list),
            (show, run_show),
            (scale, run_scale),
            (pin, run_pin),
            (delete, run_delete),
            (resolve, run_resolve),
        ],
        add_token_argument,
    )


def _named(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("name", metavar="NAME", help="the service's name")
    return parser


def _path(name: str, tail: str = "") -> str:
    return f"/api/v1/services/{quote(name, safe='')}{tail}"


def print_service(service: dict[str, Any]) -> None:
    """A service as `name : value` lines, then its replicas as a table."""
    scale = (
        f"+1 when > {service['scale_in_flight']:g} in flight per replica for {service['scale_window_s']:g} s"
        if service["scale_in_flight"]
        else "off"
    )
    print_fields(
        [
            ("service", service["name"]),
            ("consumer", service["consumer"]),
            ("replicas", f"{service['replicas']} wanted, at most {service['max_replicas']}"),
            ("scale-out", scale),
            ("health path", service["health_path"]),
        ]
    )
    rows = [
        [
            r["replica"],
            r.get("site") or "",
            r.get("endpoint") or "",
            "yes" if r.get("healthy") else "no",
            r.get("in_flight", 0),
            f"{r['weight']}{' (pinned)' if r.get('pinned') else ''}",
            r.get("served", 0),
            r.get("problem") or "",
        ]
        for r in service["replica_list"]
    ]
    print_table(None, REPLICA_COLUMNS, rows)


def run_create(args: argparse.Namespace) -> int:
    """Handler of `cpnode services create`."""
    settings = settings_from_args(args)
    token = consumer_token(args)
    if token is None and not args.consumer:
        raise CliError("--consumer is needed with the admin token", 2)
    body: dict[str, Any] = {
        "name": args.name,
        "spec": read_spec(args.spec),
        "replicas": args.replicas,
        "scale_in_flight": args.scale_in_flight,
        "scale_window_s": args.scale_window,
        "health_path": args.health_path,
    }
    if args.consumer:
        body["consumer"] = args.consumer
    if args.max_replicas is not None:
        body["max_replicas"] = args.max_replicas
    return print_output(args, call(settings, "POST", "/api/v1/services", body, token=token), print_service)


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode services list`."""
    settings = settings_from_args(args)
    services = call(settings, "GET", "/api/v1/services", token=consumer_token(args))["services"]
    if args.json:
        print_json(services)
        return 0
    rows = [
        [
            s["name"],
            s["consumer"],
            f"{sum(bool(r.get('healthy')) for r in s['replica_list'])}/{s['replicas']}",
            s["max_replicas"],
        ]
        for s in services
    ]
    print_table(f"services at {settings.node.name}", ["service", "consumer", "healthy", "max"], rows)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode services show`."""
    settings = settings_from_args(args)
    return print_output(
        args, call(settings, "GET", _path(args.name), token=consumer_token(args)), print_service
    )


def run_scale(args: argparse.Namespace) -> int:
    """Handler of `cpnode services scale`."""
    settings = settings_from_args(args)
    body = {"replicas": args.replicas}
    return print_output(
        args,
        call(settings, "POST", _path(args.name, "/scale"), body, token=consumer_token(args)),
        print_service,
    )


def parse_weights(items: list[str]) -> dict[str, int | None]:
    """`REPLICA=WEIGHT` pairs (`auto` unpins); CliError exit 2 on a malformed one."""
    weights: dict[str, int | None] = {}
    for item in items:
        replica, sep, weight = item.partition("=")
        if not sep or not replica:
            raise CliError(f"{item!r}: write REPLICA=WEIGHT", 2)
        if weight == "auto":
            weights[replica] = None
        elif weight.isdigit():
            weights[replica] = int(weight)
        else:
            raise CliError(f"{item!r}: the weight is a whole number (0 drains) or `auto`", 2)
    return weights


def run_pin(args: argparse.Namespace) -> int:
    """Handler of `cpnode services pin`."""
    settings = settings_from_args(args)
    body = {"weights": parse_weights(args.weights)}
    return print_output(
        args,
        call(settings, "POST", _path(args.name, "/pin"), body, token=consumer_token(args)),
        print_service,
    )


def run_delete(args: argparse.Namespace) -> int:
    """Handler of `cpnode services delete`."""
    settings = settings_from_args(args)
    answer = call(settings, "DELETE", _path(args.name), token=consumer_token(args))
    if args.json:
        print_json(answer)
    else:
        console().print(f"service {answer['deleted']} deleted; its replicas are stopping", markup=False)
    return 0


def run_resolve(args: argparse.Namespace) -> int:
    """Handler of `cpnode services resolve`."""
    settings = settings_from_args(args)
    query = f"?{urlencode({'site': args.site})}" if args.site else ""
    answer = call(settings, "GET", _path(args.name, f"/resolve{query}"), token=consumer_token(args))
    if args.json:
        print_json(answer)
        return 0
    rows = [
        [
            i + 1,
            r["replica"],
            r.get("endpoint") or "",
            f"{r['score_ms']:g}" if r["eligible"] else "—",
            "; ".join(r["reasons"]),
        ]
        for i, r in enumerate(answer["replicas"])
    ]
    title = f"{answer['service']} for users at {answer['site'] or 'an unknown site'}"
    print_table(title, ["#", "replica", "endpoint", "score (ms)", "reasons"], rows)
    return 0
