"""The command line as a whole: help everywhere, db commands, key permission warnings."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from node.cli.main import build_parser
from node.cli.main import main as cpnode
from node.config import load_settings
from node.identity import IdentityError, load_identity
from tests.support.nodes import make_node_dir


def _all_command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths.extend(_all_command_paths(sub, (*prefix, name)))
    return paths


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` works for every command and subcommand and describes it."""
    paths = _all_command_paths(build_parser())
    assert ("init",) in paths
    assert ("db", "upgrade") in paths
    for path in paths:
        with pytest.raises(SystemExit) as info:
            cpnode([*path, "--help"])
        assert info.value.code == 0, path
        assert "usage: cpnode" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Running `cpnode` alone shows the commands and exits 2."""
    assert cpnode([]) == 2
    assert "commands" in capsys.readouterr().out


def test_db_upgrade_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`db status` reports behind on a fresh database (exit 1), `db upgrade` brings it up to date."""
    config = make_node_dir(tmp_path, "alpha", migrated=False)
    assert cpnode(["db", "status", "--json", "--config", str(config)]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert {row["state"] for row in rows} == {"behind"}
    assert cpnode(["db", "upgrade", "--json", "--config", str(config)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["state"] for row in rows} == {"up to date"}
    assert cpnode(["db", "status", "--config", str(config)]) == 0


def test_group_readable_key_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A key readable by others still loads but logs a warning with the fix."""
    config = make_node_dir(tmp_path, "alpha")
    key = config.parent / "keys" / "node.key"
    key.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="cpnode.identity"):
        identity = load_identity(load_settings(config, environ={}))
    assert identity.name == "alpha"
    assert f"chmod 600 {key}" in caplog.text


def test_group_read_can_be_declared_expected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With keys.allow_group_read (a secret volume with fsGroup) a 0440 key loads without a warning;
    readable by others still warns, and writable by the group is still refused."""
    config = make_node_dir(tmp_path, "alpha")
    key = config.parent / "keys" / "node.key"
    environ = {"CPNODE_KEYS_ALLOW_GROUP_READ": "true"}
    key.chmod(0o440)
    with caplog.at_level(logging.WARNING, logger="cpnode.identity"):
        assert load_identity(load_settings(config, environ=environ)).name == "alpha"
    assert "readable" not in caplog.text
    key.chmod(0o444)
    with caplog.at_level(logging.WARNING, logger="cpnode.identity"):
        load_identity(load_settings(config, environ=environ))
    assert "readable by group or others (mode 0444)" in caplog.text
    key.chmod(0o660)
    with pytest.raises(IdentityError, match="writable by group or others"):
        load_identity(load_settings(config, environ=environ))


def test_status_on_a_never_started_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status on a node whose database was never migrated explains what to do instead of failing."""
    config = make_node_dir(tmp_path, "alpha", migrated=False)
    assert cpnode(["status", "--json", "--config", str(config)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "cpnode db upgrade" in data["components"]
    assert data["process"] == "not running"
    assert cpnode(["db", "upgrade", "--config", str(config)]) == 0
    capsys.readouterr()
    assert cpnode(["status", "--json", "--config", str(config)]) == 0
    assert "components" not in json.loads(capsys.readouterr().out)


def test_command_table_matches_what_modules_register() -> None:
    """Every command in the dispatch table is registered by the module it names, and nothing else is."""
    from node.cli.commands import COMMANDS

    for command, module in COMMANDS.items():
        parser = build_parser(command)
        [(name, _)] = [
            (name, sub)
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()
        ]
        assert name == command, module
    assert set(_all_command_paths(build_parser())) >= {(command,) for command in COMMANDS}


def test_admin_commands_say_when_the_node_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands that talk to the running node explain that it is not running instead of failing oddly."""
    config = make_node_dir(tmp_path, "alpha")
    for command in (["orders", "list"], ["plugins", "list"], ["consumers", "list"]):
        assert cpnode([*command, "--config", str(config)]) == 1
        assert "the node is not running" in capsys.readouterr().err
