"""`cpnode plugins list|add|remove|check`: hot-plug compute and network plugins on a running node."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_config_argument,
    add_handler,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call

# Loaded by the handlers that use them, so this command's `--help` stays light.
if TYPE_CHECKING:
    from connectors.conformance import CheckResult
    from connectors.contract import Program


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode plugins ...`."""
    parser = add_command(commands, "plugins")
    sub = parser.add_subparsers(title="plugin commands", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="plugins with their state, version and offers")
    add_handler(listing, run_list)

    add = sub.add_parser("add", help="host an installed plugin (re-adding a name upgrades it, no restart)")
    add.add_argument("name", help="pool or network name")
    add.add_argument(
        "entry_point", help="plugin entry point in cpnode.connectors (e.g. local, cloudsim-alpha)"
    )
    add.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option (repeatable)"
    )
    add.add_argument("--reload", action="store_true", help="re-import the plugin's module (code upgrade)")
    add_handler(add, run_add)

    remove = sub.add_parser("remove", help="stop hosting a plugin; its offers are withdrawn at once")
    remove.add_argument("name")
    add_config_argument(remove)
    remove.set_defaults(handler=run_remove)

    check = sub.add_parser(
        "check", help="run the conformance checks against a plugin; prints pass/fail per check"
    )
    check.add_argument("target", help="a hosted plugin's NAME, or the URL of a plugin service")
    check.add_argument("--call-token", help="the plugin service's call token (with a URL)")
    check.add_argument(
        "--command", nargs=argparse.REMAINDER, help="program to deploy (default: counter program)"
    )
    check.add_argument("--timeout", type=float, default=30.0, help="seconds per checkpoint (default 30)")
    check.add_argument(
        "--python", help="the Python interpreter on the pool for the run checks (default: this one's path)"
    )
    add_handler(check, run_check)


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--option must be KEY=VALUE, got {pair!r}", exit_code=2)
        options[key] = int(value) if value.isdigit() else value
    return options


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_list(args: argparse.Namespace) -> int:
    """Print the node's plugins."""
    data = call(settings_from_args(args), "GET", "/api/v1/plugins")
    if args.json:
        print_json(data)
        return 0
    rows = [
        (
            p["name"],
            p["kind"],
            p["source"],
            p["version"],
            p["state"],
            p["offers"],
            p["free_units"],
            _short(p["last_error"]),
        )
        for p in data["plugins"]
    ]
    print_table(
        "plugins", ("name", "kind", "source", "version", "state", "offers", "free", "last error"), rows
    )
    for name, error in sorted(data["load_errors"].items()):
        print(f"skipped {name}: {error}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    """Host a plugin on the running node."""
    body = {
        "name": args.name,
        "entry_point": args.entry_point,
        "options": _options(args.option),
        "reload": args.reload,
    }
    data = call(settings_from_args(args), "POST", "/api/v1/plugins", body)
    if args.json:
        print_json(data)
    else:
        print(f"plugin {data['name']} {data['version']} is {data['state']} with {data['offers']} offer(s)")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Remove a plugin from the running node."""
    data = call(settings_from_args(args), "DELETE", f"/api/v1/plugins/{args.name}")
    print(f"plugin {data['name']} removed")
    return 0


def _print_checks(title: str, rows: list[dict[str, Any]]) -> None:
    table = [("PASS" if r["passed"] else "FAIL", r["check"], r["ms"], r["detail"]) for r in rows]
    print_table(title, ("result", "check", "ms", "detail"), table)


def run_check(args: argparse.Namespace) -> int:
    """Run the conformance checks; exit 0 only if every check passed."""
    from connectors.contract import Program
    from connectors.errors import ConnectorError
    from connectors.pools.local import COUNTER_PROGRAM

    command = args.command or None
    if args.target.startswith(("http://", "https://")):
        if not args.call_token:
            raise CliError("checking a plugin service by URL needs --call-token", exit_code=2)
        program = Program(command=command or [sys.executable, str(COUNTER_PROGRAM)])
        try:
            python = [args.python] if args.python else None
            results = asyncio.run(_check_url(args.target, args.call_token, program, args.timeout, python))
        except ConnectorError as exc:
            raise CliError(f"cannot check the plugin service at {args.target}: {exc}") from None
        rows = [
            {"check": r.name, "passed": r.passed, "detail": r.detail, "ms": r.duration_ms} for r in results
        ]
        data: dict[str, Any] = {
            "plugin": args.target,
            "passed": all(r.passed for r in results),
            "checks": rows,
        }
    else:
        body: dict[str, Any] = {"timeout_s": args.timeout}
        if command:
            body["command"] = command
        if args.python:
            body["python"] = [args.python]
        data = call(settings_from_args(args), "POST", f"/api/v1/plugins/{args.target}/check", body)
    if args.json:
        print_json(data)
    else:
        _print_checks(f"conformance of {data['plugin']}", data["checks"])
        print("all checks passed" if data["passed"] else "some checks FAILED")
    return 0 if data["passed"] else 1


async def _check_url(
    url: str, token: str, program: Program, timeout_s: float, python: list[str] | None = None
) -> list[CheckResult]:
    from connectors.conformance import run_checks
    from connectors.remote.client import RemotePlugin

    plugin = RemotePlugin("checked", url, token, timeout_s=max(10.0, timeout_s))
    await plugin.start()
    try:
        info = await plugin.info()
        plugin.name = info.name
        return await run_checks(plugin, program, timeout_s, python)
    finally:
        await plugin.close()
