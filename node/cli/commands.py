"""The light table of `cpnode` commands: each command's module and one-line help.

`cpnode --help`, `--version` and a mistyped command are answered from this table alone; a command's
module (and whatever it imports) is loaded only when that command runs or shows its own help. The
modules take their one-line help from here, so the two never drift apart.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    # argparse's group of subparsers: generic for type checkers only.
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


@dataclass(frozen=True)
class Command:
    """A top-level command: the module that registers it and its one-line help."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "init": Command("node.cli.init_cmd", "create a node: config, key and data folder"),
    "run": Command("node.cli.run_cmd", "serve the node until interrupted"),
    "status": Command("node.cli.status_cmd", "show the node's identity, database, schema and parts"),
    "whoami": Command("node.cli.whoami_cmd", "who a token names on the running node: role and user"),
    "reload": Command("node.cli.reload_cmd", "apply a changed config file to the running node"),
    "db": Command("node.cli.db_cmd", "database schema migrations"),
    "plan": Command("node.cli.plan_cmd", "plan microservices for an availability target"),
    "deploy": Command("node.cli.deploy_cmd", "write deployment manifests from an availability plan"),
    "plugins": Command("node.cli.plugins_cmd", "list, add, remove and check plugins of the running node"),
    "pools": Command("node.cli.pools_cmd", "pools of the running node, their offers and registration codes"),
    "gateway": Command(
        "node.cli.gateway_cmd", "run this host's local pool as a managed pool of a node (compute gateway)"
    ),
    "express": Command(
        "node.cli.express_cmd", "run the data express: moves state files between pools' storage endpoints"
    ),
    "keys": Command("node.cli.keys_cmd", "show or rotate the node's key; deny a compromised key"),
    "partners": Command("node.cli.partners_cmd", "pin, list and remove partners; trust discovered nodes"),
    "catalog": Command("node.cli.catalog_cmd", "sync partner catalogs now; show the merged offer view"),
    "ledger": Command(
        "node.cli.ledger_cmd", "settlement ledger: accounts, transfers, audit exports, reconciliation"
    ),
    "consumers": Command("node.cli.consumers_cmd", "consumer accounts and deposits"),
    "statements": Command(
        "node.cli.statements_cmd", "signed monthly statements of consumers and partners; verify one offline"
    ),
    "accounts": Command(
        "node.cli.accounts_cmd", "account lifecycle and audit events; assertions for partners (账号互通)"
    ),
    "users": Command("node.cli.users_cmd", "operator users with roles admin, operator, auditor"),
    "orders": Command("node.cli.orders_cmd", "place, settle and cancel consumers' orders"),
    "market": Command("node.cli.market_cmd", "match a demand against this node's and its partners' offers"),
    "network": Command("node.cli.network_cmd", "the merged network view: sites, links, best paths"),
    "strategies": Command(
        "node.cli.strategies_cmd", "scheduling strategies: add, list, show, retire, A/B split, report"
    ),
    "tasks": Command("node.cli.tasks_cmd", "submit tasks, follow their state and log, fetch their outputs"),
    "supervisors": Command("node.cli.supervisors_cmd", "supervisors this node reports to, and its reports"),
    "supervision": Command(
        "node.cli.supervision_cmd", "a supervisor's registered nodes, national totals and report history"
    ),
    "migrations": Command(
        "node.cli.migrations_cmd", "move running pool instances to another pool: plan, start, follow, cancel"
    ),
    "migrate": Command(
        "node.cli.migrate_cmd", "move a running task to another pool of this node or to a partner's pool"
    ),
    "services": Command(
        "node.cli.services_cmd", "inference services: replicas on pools, steered traffic, weights, scale"
    ),
}


def add_command(commands: Subcommands, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add top-level command `name` with its help from the table (and any other parser options)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=COMMANDS[name].help, **kwargs)
    return parser


def add_placeholders(commands: Subcommands) -> None:
    """Add every command by name and help only, for `cpnode --help` and usage errors."""
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.help, add_help=False)
