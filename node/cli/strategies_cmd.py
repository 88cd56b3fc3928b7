"""`cpnode strategies`: scheduling strategies by name and version (调度管理) — register a version with
its parameters, list, show, retire, split consumers' demands between two versions (A/B), and
compare two versions on the orders they chose."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote, urlencode

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_config_argument,
    add_json_argument,
    console,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call
from node.money import format_money


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode strategies`."""
    parser = add_command(commands, "strategies", description="Scheduling strategies of the running node.")
    sub = parser.add_subparsers(title="strategies commands", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="register the next version of a strategy with its parameters")
    add.add_argument("name", help="the strategy's name (a–z, 0–9, '-'; not a built-in kind)")
    add.add_argument(
        "--kind", required=True, help="cost, performance, value, nearest, coschedule or composite"
    )
    add.add_argument(
        "--params",
        default="{}",
        metavar="JSON",
        help='its parameters, e.g. \'{"weights": {"cost": 1, "latency": 3}}\' (see docs/scheduling.md)',
    )
    add.add_argument("--note", default="", help="what this version changes, for people")
    add.set_defaults(handler=run_add)
    listing = sub.add_parser("list", help="registered versions, built-in kinds and A/B splits")
    listing.set_defaults(handler=run_list)
    show = sub.add_parser("show", help="one strategy's versions and split")
    show.add_argument("name")
    show.set_defaults(handler=run_show)
    retire = sub.add_parser("retire", help="retire a version (demands naming it are refused; its split ends)")
    retire.add_argument("name")
    retire.add_argument("version", type=int)
    retire.set_defaults(handler=run_retire)
    split = sub.add_parser("split", help="split consumers' demands between versions: VERSION=PERCENT ...")
    split.add_argument("name")
    split.add_argument("shares", nargs="+", metavar="VERSION=PERCENT", help="percentages summing to 100")
    split.set_defaults(handler=run_split)
    report = sub.add_parser("report", help="compare two versions (NAME@VERSION) on their real orders")
    report.add_argument("a", metavar="A", help="NAME@VERSION")
    report.add_argument("b", metavar="B", help="NAME@VERSION")
    report.set_defaults(handler=run_report)
    order = sub.add_parser(
        "order", help="which strategy (and version) chose an order, and the latency it expected"
    )
    order.add_argument("order_id")
    order.set_defaults(handler=run_order)
    for action in (add, listing, show, retire, split, report, order):
        add_config_argument(action)
        add_json_argument(action)


def _done(args: argparse.Namespace, answer: Any) -> int:
    if args.json:
        print_json(answer)
    return 0


def _print_versions(versions: list[dict[str, Any]]) -> None:
    rows = [
        [
            f"{v['name']}@{v['version']}",
            v["kind"],
            json.dumps(v["params"], sort_keys=True),
            "active" if v.get("active", True) else "retired",
            v.get("note", ""),
        ]
        for v in versions
    ]
    print_table(None, ["strategy", "kind", "parameters", "state", "note"], rows)


def run_add(args: argparse.Namespace) -> int:
    """Handler of `cpnode strategies add`."""
    try:
        params = json.loads(args.params)
    except ValueError as exc:
        raise CliError(f"--params is not JSON: {exc}", 2) from None
    body = {"name": args.name, "kind": args.kind, "params": params, "note": args.note}
    added = call(settings_from_args(args), "POST", "/api/v1/strategies", body)
    if not args.json:
        console().print(f"registered {added['name']}@{added['version']} ({added['kind']})", markup=False)
    return _done(args, added)


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode strategies list`."""
    answer = call(settings_from_args(args), "GET", "/api/v1/strategies")
    if not args.json:
        _print_versions(answer["strategies"] + answer["builtin"])
        for name, split in answer["splits"].items():
            shares = ", ".join(f"{name}@{v}: {p} %" for v, p in split.items())
            console().print(f"A/B split of {name}: {shares}", markup=False)
    return _done(args, answer)


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode strategies show`."""
    answer = call(settings_from_args(args), "GET", f"/api/v1/strategies/{quote(args.name)}")
    if not args.json:
        _print_versions(answer["versions"])
        if answer.get("split"):
            shares = ", ".join(f"@{v}: {p} %" for v, p in answer["split"].items())
            console().print(f"A/B split: {shares}", markup=False)
    return _done(args, answer)


def run_retire(args: argparse.Namespace) -> int:
    """Handler of `cpnode strategies retire`."""
    path = f"/api/v1/strategies/{quote(args.name)}/retire"
    answer = call(settings_from_args(args), "POST", path, {"version": args.version})
    if not args.json:
        console().print(f"{answer['name']}@{answer['version']} is retired", markup=False)
    return _done(args, answer)


def run_split(args: argparse.Namespace) -> int:
    """Handler of `cpnode strategies split`."""
    shares: dict[str, int] = {}
    for text in args.shares:
        version, _, percent = text.partition("=")
        if not version.isdigit() or not percent.isdigit():
            raise CliError(f"{text!r}: give VERSION=PERCENT, e.g. 1=50", 2)
        shares[version] = int(percent)
    path = f"/api/v1/strategies/{quote(args.name)}/split"
    answer = call(settings_from_args(args), "PUT", path, {"split": shares})
    if not args.json:
        split = ", ".join(f"@{v}: {p} %" for v, p in answer["split"].items())
        console().print(f"{answer['name']} split by consumer: {split}", markup=False)
    return _done(args, answer)


def _interval(figure: dict[str, Any], money: str | None = None, scale: float = 1.0, unit: str = "") -> str:
    if figure["mean"] is None:
        return "no data"

    def shown(x: float) -> str:
        return format_money(round(x), money) if money else f"{x * scale:.3g}{unit}"

    if figure["low"] is None:
        return f"{shown(figure['mean'])} (n={figure['n']}, no interval)"
    return f"{shown(figure['mean'])} [{shown(figure['low'])} – {shown(figure['high'])}] (n={figure['n']})"


def run_report(args: argparse.Namespace) -> int:
    """Handler of `cpnode strategies report`."""
    settings = settings_from_args(args)
    answer = call(settings, "GET", "/api/v1/strategies/report?" + urlencode({"a": args.a, "b": args.b}))
    if not args.json:
        currency = settings.trading.currency
        rows = [
            [label, side["strategy"], side["orders"],
             _interval(side["price_paid"], currency),
             _interval(side["time_to_running_s"], unit=" s"),
             _interval(side["task_success"], scale=100, unit=" %"),
             _interval(side["latency_ms"], unit=" ms")]
            for label, side in (("A", answer["a"]), ("B", answer["b"]))
        ]  # fmt: skip
        print_table(
            "mean [95 % confidence interval]",
            ["", "strategy", "orders", "price paid", "time to running", "task success", "latency to users"],
            rows,
        )
    return _done(args, answer)


def run_order(args: argparse.Namespace) -> int:
    """Handler of `cpnode strategies order`."""
    noted = call(settings_from_args(args), "GET", f"/api/v1/strategies/orders/{quote(args.order_id)}")
    if not args.json:
        latency = "unknown" if noted["latency_us"] is None else f"{noted['latency_us'] / 1000:g} ms"
        console().print(
            f"{noted['order_id']}: chosen by {noted['strategy']}@{noted['version']} ({noted['kind']}) for "
            f"{noted['consumer']}; site {noted['site'] or 'unknown'}; latency to the users {latency}",
            markup=False,
        )
    return _done(args, noted)
