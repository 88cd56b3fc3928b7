"""`cpnode init DIR`: write a node's config, a fresh Ed25519 key, an admin token and its data folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from node.cli.commands import add_command
from node.cli.common import CliError, add_json_argument, print_fields, print_json
from node.runfile import DEFAULT_CONFIG_NAME

HEADER = "# cpnode node configuration. Reference: docs/operating.md, section 'Configuration'.\n\n"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode init`."""
    parser = add_command(
        commands,
        "init",
        description="Create DIR/node.toml, a fresh Ed25519 key at DIR/keys/node.key (mode 0600), "
        "an admin token and DIR/data/. Refuses to overwrite an existing node without --force.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder for the node (created if missing)")
    parser.add_argument("--name", required=True, help="node name: lowercase letters, digits and '-'")
    parser.add_argument("--operator", required=True, help="organisation operating the node")
    parser.add_argument("--region", required=True, help="city or region the node serves")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8700, help="HTTP port (default 8700; 0 = any free port)")
    parser.add_argument("--db", default=None, help="database URL (default: SQLite file DIR/data/node.db)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing config and key")
    add_json_argument(parser)
    parser.set_defaults(handler=run)


def config_data(args: argparse.Namespace) -> dict[str, Any]:
    """The content of node.toml for these arguments."""
    data: dict[str, Any] = {
        "node": {"name": args.name, "operator": args.operator, "region": args.region},
        "http": {"host": args.host, "port": args.port},
        "database": {"url": args.db or "sqlite:///data/node.db"},
        "keys": {"path": "keys/node.key", "admin_token_path": "keys/admin.token"},
    }
    return data


def run(args: argparse.Namespace) -> int:
    """Handler of `cpnode init`."""
    import tomli_w

    from node.config import ConfigError, parse_settings
    from node.http.auth import new_admin_token
    from node.identity import new_identity_files, write_files_together

    directory: Path = args.dir
    data = config_data(args)
    try:
        settings = parse_settings(data, directory.resolve(), environ={})
    except ConfigError as exc:
        raise CliError(str(exc), exit_code=2) from None
    config_path = directory / DEFAULT_CONFIG_NAME
    key_path = settings.path(settings.keys.path)
    token_path = settings.path(settings.keys.admin_token_path)
    if not args.force:
        for existing in (key_path, config_path):
            if existing.exists():
                raise CliError(
                    f"{existing} already exists; refusing to overwrite a node's "
                    f"{'key' if existing == key_path else 'config'} (use --force to replace it)"
                )
    if directory.exists() and not directory.is_dir():
        raise CliError(f"{directory} exists and is not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        identity, files = new_identity_files(settings.node.name, key_path)
        files[token_path] = ((new_admin_token() + "\n").encode(), 0o600)
        files[config_path] = ((HEADER + tomli_w.dumps(data)).encode(), 0o644)
        write_files_together(files)
    except OSError as exc:
        raise CliError(f"cannot write the node into {directory}: {exc.strerror or exc}") from None
    result = {
        "name": identity.name,
        "key_id": identity.key_id,
        "public_key": identity.public_key,
        "fingerprint": identity.fingerprint,
        "config": str(config_path),
    }
    if args.json:
        print_json(result)
    else:
        print_fields(
            [
                ("node", identity.name),
                ("key id", identity.key_id),
                ("public key", identity.public_key),
                ("fingerprint", identity.fingerprint),
                ("config", config_path),
            ]
        )
    return 0
