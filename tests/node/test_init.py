"""`cpnode init`: files, modes, refusal to overwrite, nothing half-written on bad input."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from federation.keys import load_private_key_pem
from node.cli.main import main as cpnode


def _init(directory: Path, *extra: str) -> int:
    return cpnode(
        ["init", str(directory), "--name", "alpha", "--operator", "Org", "--region", "Beijing", *extra]
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_config_key_and_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """init writes node.toml, a 0600 PEM key, a 0600 admin token and data/, and prints name and key id."""
    directory = tmp_path / "n"
    assert _init(directory, "--json", "--port", "8800") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "alpha"
    assert out["key_id"].startswith("ed25519:")
    config = tomllib.loads((directory / "node.toml").read_text(encoding="utf-8"))
    assert config["node"] == {"name": "alpha", "operator": "Org", "region": "Beijing"}
    assert config["http"]["port"] == 8800
    key = directory / "keys" / "node.key"
    assert _mode(key) == 0o600
    assert _mode(directory / "keys" / "admin.token") == 0o600
    load_private_key_pem(key.read_bytes())
    assert (directory / "data").is_dir()


def test_second_init_refuses_and_keeps_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second init into the same folder exits non-zero and leaves the existing key untouched."""
    directory = tmp_path / "n"
    assert _init(directory) == 0
    before = (directory / "keys" / "node.key").read_bytes()
    capsys.readouterr()
    assert _init(directory) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (directory / "keys" / "node.key").read_bytes() == before


def test_force_replaces_the_key(tmp_path: Path) -> None:
    """--force makes a new key in place of the old one."""
    directory = tmp_path / "n"
    assert _init(directory) == 0
    before = (directory / "keys" / "node.key").read_bytes()
    assert _init(directory, "--force") == 0
    assert (directory / "keys" / "node.key").read_bytes() != before


def test_bad_name_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid name is rejected with exit code 2 before anything is created."""
    directory = tmp_path / "n"
    code = cpnode(["init", str(directory), "--name", "Bad Name", "--operator", "o", "--region", "r"])
    assert code == 2
    assert "node.name" in capsys.readouterr().err
    assert not directory.exists()


def test_bad_port_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A port out of range is reported with its config path."""
    assert _init(tmp_path / "n", "--port", "70000") == 2
    assert "'http.port': must be 1–65535, got 70000" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()


def test_init_into_a_file_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pointing init at an existing regular file is a clear error."""
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    assert _init(target) == 1
    assert "not a folder" in capsys.readouterr().err
