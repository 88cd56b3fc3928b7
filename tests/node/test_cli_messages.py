"""What the command line says when an operator gets something wrong: a key id given where a public
key belongs is named as a key id, with where to get the public key."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli.main import main as cpnode
from node.config import ConfigError, load_settings
from node.identity import load_identity
from tests.support.nodes import make_node_dir


def test_partners_add_with_a_key_id_says_where_to_get_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`partners add --key <key id>` exits 2 naming it a key id and pointing at `cpnode keys show`
    and /fed/v1/keys, instead of only "must be 32 bytes, got 12"."""
    config = make_node_dir(tmp_path, "alpha")
    other = load_identity(load_settings(make_node_dir(tmp_path, "beta"), environ={}))
    args = ["partners", "add", "beta", "--url", "http://127.0.0.1:9", "--key", other.key_id]
    assert cpnode([*args, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{other.key_id} is a key id, not a public key" in err
    assert "cpnode keys show" in err
    assert "/fed/v1/keys" in err


def test_config_partner_with_a_key_id_says_so(tmp_path: Path) -> None:
    """A `[[partners]]` entry whose `key` is a key id fails with the same hint, at `partners.0.key`."""
    other = load_identity(load_settings(make_node_dir(tmp_path, "beta"), environ={}))
    partner = f'[[partners]]\nname = "beta"\nurls = ["http://127.0.0.1:9"]\nkey = "{other.key_id}"\n'
    config = make_node_dir(tmp_path, "alpha", extra_toml=partner)
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert "'partners.0.key'" in str(info.value)
    assert "is a key id, not a public key" in str(info.value)
