"""`cpnode supervisors` and `cpnode supervision` on a node's folder (no process): pinning, listing,
removing, and clear errors for bad input that change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from federation.keys import public_key_text
from node.cli.main import main
from node.config import load_settings
from node.roles import ALL_ROLES
from node.service import NodeServer
from node.supervision import store, tables
from tests.support.cli import cpnode
from tests.support.nodes import make_node_dir

KEY = public_key_text(SigningKey.generate().verify_key)
ALLOW = '[federation]\nallow_networks = ["127.0.0.0/8"]\n'


def test_supervisors_are_pinned_listed_and_removed(tmp_path: Path) -> None:
    """A supervisor added from the CLI is listed with no report yet, shows an empty report list,
    and is removed; adding it twice or removing an unknown one fails with the reason."""
    config = str(make_node_dir(tmp_path, "north", extra_toml=ALLOW))
    added = cpnode(
        "supervisors",
        "add",
        "watch",
        "--url",
        "http://127.0.0.1:9",
        "--key",
        KEY,
        "--config",
        config,
        "--json",
    )
    assert added.code == 0, added.output
    assert added.json()["fingerprint"].startswith("SHA256:")
    again = cpnode(
        "supervisors", "add", "watch", "--url", "http://127.0.0.1:9", "--key", KEY, "--config", config
    )
    assert again.code == 1
    assert "already exists" in again.output
    [row] = cpnode("supervisors", "list", "--config", config, "--json").json()["supervisors"]
    assert (row["name"], row["last_seq"], row["sent"], row["pending"]) == ("watch", 0, 0, 0)
    assert cpnode("supervisors", "reports", "watch", "--config", config, "--json").json()["reports"] == []
    assert cpnode("supervisors", "remove", "watch", "--config", config).code == 0
    gone = cpnode("supervisors", "remove", "watch", "--config", config)
    assert gone.code == 1
    assert "no supervisor called 'watch'" in gone.output


def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """A key id given for a key, a bad name, a refused address and an unknown node's history are
    refused with a clear message; nothing is pinned."""
    config = str(make_node_dir(tmp_path, "watch", extra_toml=ALLOW))
    kid_only = cpnode(
        "supervision",
        "nodes",
        "add",
        "north",
        "--url",
        "http://127.0.0.1:9",
        "--key",
        "ed25519:abc",
        "--config",
        config,
    )
    assert kid_only.code == 2
    assert "--key" in kid_only.output
    bad_name = cpnode(
        "supervision",
        "nodes",
        "add",
        "North_1",
        "--url",
        "http://127.0.0.1:9",
        "--key",
        KEY,
        "--config",
        config,
    )
    assert bad_name.code == 2
    assert "node name" in bad_name.output
    metadata = cpnode(
        "supervision",
        "nodes",
        "add",
        "north",
        "--url",
        "http://169.254.169.254",
        "--key",
        KEY,
        "--config",
        config,
    )
    assert metadata.code == 1
    history = cpnode("supervision", "history", "north", "--config", config)
    assert history.code == 1
    assert "no node called 'north' is registered" in history.output
    summary = cpnode("supervision", "summary", "--config", config, "--json").json()
    assert (summary["registered_nodes"], summary["totals"]["reporting_nodes"], summary["nodes"]) == (0, 0, [])


def test_a_limit_out_of_range_is_refused_before_the_database_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--limit` outside 1–500 (history) or 1–1000 (reports) is an argument error (exit 2) naming
    the range, and the refused command does not create the node's database."""
    config = make_node_dir(tmp_path, "watch", extra_toml=ALLOW, migrated=False)
    database = load_settings(config).data_dir / "node.db"
    assert not database.exists()
    for argv, allowed in (
        (["supervision", "history", "north", "--limit", "501"], "must be 1–500, got 501"),
        (["supervision", "history", "north", "--limit", "0"], "must be 1–500, got 0"),
        (["supervisors", "reports", "watch", "--limit", "1001"], "must be 1–1000, got 1001"),
        (["supervisors", "reports", "watch", "--limit", "many"], "not a whole number: 'many'"),
    ):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--config", str(config)])
        assert info.value.code == 2
        assert f"argument --limit: {allowed}" in capsys.readouterr().err
    assert not database.exists()


def test_registered_nodes_are_listed_as_never_reported(tmp_path: Path) -> None:
    """A node registered with a supervisor (its URL is optional) and not heard from yet is listed and
    flagged so."""
    config = str(make_node_dir(tmp_path, "watch", extra_toml=ALLOW))
    added = cpnode("supervision", "nodes", "add", "north", "--key", KEY, "--config", config)
    assert added.code == 0, added.output
    [node] = cpnode("supervision", "nodes", "list", "--config", config, "--json").json()["nodes"]
    assert (node["node"], node["last_seq"], node["flags"]) == ("north", 0, ["never_reported"])
    text = cpnode("supervision", "summary", "--config", config)
    assert text.code == 0
    assert "north" in text.output


async def test_config_supervisors_follow_a_reload(tmp_path: Path) -> None:
    """`[[supervisors]]` are kept in the database at start, replaced by a reload of the config file
    (without a restart), and cannot be removed from the CLI."""
    config = make_node_dir(
        tmp_path,
        "north",
        extra_toml=ALLOW + f'\n[[supervisors]]\nname = "watch"\nurl = "http://127.0.0.1:9"\nkey = "{KEY}"\n',
    )
    server = NodeServer(load_settings(config, environ={}), ALL_ROLES, config_path=config)
    await server.start()
    try:
        assert server.ctx is not None
        engine = server.ctx.engine
        assert [(p.name, p.source) for p in store.list_pinned(engine, tables.supervisors_t)] == [
            ("watch", "config")
        ]
        refused = cpnode("supervisors", "remove", "watch", "--config", str(config))
        assert refused.code == 1
        assert "comes from the config file" in refused.output
        text = config.read_text(encoding="utf-8").replace('name = "watch"', 'name = "national"')
        config.write_text(text, encoding="utf-8")
        result = await server.reload()
        assert "supervisors" in result.applied
        assert [p.name for p in store.list_pinned(engine, tables.supervisors_t)] == ["national"]
    finally:
        await server.stop()
