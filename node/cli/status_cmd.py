"""`cpnode status`: who the node is, its database and schema, whether it is running, and its parts."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handler,
    print_fields,
    print_json,
    settings_from_args,
)
from node.runfile import config_drift, running_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import Settings

PROBE_TIMEOUT_S = 1.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode status`."""
    parser = add_command(
        commands,
        "status",
        description="Show name, key id, database, schema version, whether the node is running, "
        "and what each component reports (partners, pools, ...).",
    )
    add_handler(parser, run)


def probe(settings: Settings) -> str:
    """`running at URL` if the node answers /healthz as itself, else `not running`."""
    url = running_url(settings)
    if url is None:
        return "not running"
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=PROBE_TIMEOUT_S) as response:  # noqa: S310
            body = json.loads(response.read(4096))
    except (OSError, ValueError):
        return "not running"
    return f"running at {url}" if body.get("node") == settings.node.name else "not running"


def schema_rows(engine: Engine) -> list[dict[str, str | None]]:
    """`cpnode db status`'s rows; read without Alembic when the database is at the shipped heads."""
    from node.db.revisions import at_shipped_heads, shipped_heads_by_branch

    heads = shipped_heads_by_branch()
    if heads is not None and at_shipped_heads(engine):
        return [
            {"branch": branch, "current": head, "latest": head, "state": "up to date"}
            for branch, head in sorted(heads.items())
        ]
    from node.cli.db_cmd import version_rows

    return version_rows(engine)


def collect(settings: Settings, config_path: Path) -> tuple[dict[str, Any], bool]:
    """The status fields of the node, and whether everything needed is healthy."""
    # The database layer and the status readers are loaded here, not for `cpnode status --help`;
    # the readers load only the stores they read, none of the components (node.cli.status_lines).
    from node.cli.status_lines import READERS
    from node.db import DatabaseError, check_database, make_engine
    from node.identity import IdentityError, load_identity

    healthy = True
    data: dict[str, Any] = {
        "name": settings.node.name,
        "operator": settings.node.operator,
        "region": settings.node.region,
    }
    try:
        identity = load_identity(settings)
        data.update(key_id=identity.key_id, public_key=identity.public_key, fingerprint=identity.fingerprint)
    except IdentityError as exc:
        data["key_error"] = str(exc)
        healthy = False
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    data["database"] = engine.url.render_as_string(hide_password=True)
    try:
        check_database(engine)
        rows = schema_rows(engine)
        data["schema"] = {row["branch"]: f"{row['current'] or '-'} ({row['state']})" for row in rows}
        if any(row["state"] != "up to date" for row in rows):
            # Components read their own tables; on an older schema they would fail, so say why instead.
            data["components"] = "schema not up to date: run `cpnode db upgrade` (or start the node)"
        else:
            for reader in READERS:
                for label, value in reader(settings, engine):
                    data[label] = value
    except DatabaseError as exc:
        data["database_error"] = str(exc)
        healthy = False
    finally:
        engine.dispose()
    data["process"] = probe(settings)
    if data["process"].startswith("running"):
        drift = config_drift(settings, config_path)
        if drift is not None:
            data["config"] = drift
    return data, healthy


def run(args: argparse.Namespace) -> int:
    """Handler of `cpnode status`."""
    settings = settings_from_args(args)
    data, healthy = collect(settings, args.config)
    if args.json:
        print_json(data)
    else:
        fields: list[tuple[str, Any]] = []
        for key, value in data.items():
            if isinstance(value, dict):
                fields.extend((f"{key} {inner}", text) for inner, text in value.items())
            else:
                fields.append((key.replace("_", " "), value))
        print_fields(fields)
    if not healthy:
        raise CliError("the node's key or database is not usable (see above)")
    return 0
