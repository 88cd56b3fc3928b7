"""The admin token file follows the node key's permission policy: writable by others (or in a
folder anyone may rename files in) is refused at start with the chmod to fix it; readable by others
is started with a warning."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_settings
from node.service import NodeServer, NodeStartError
from tests.support.nodes import make_node_dir


def _token(config: Path) -> Path:
    return config.parent / "keys" / "admin.token"


async def _start(config: Path) -> None:
    server = NodeServer(load_settings(config, environ={}))
    await server.start()
    await server.stop()


def test_world_writable_token_exits_1(tmp_path: Path) -> None:
    """`cpnode run` with admin.token at 0666 exits 1 naming the file and the fix (was: started silently)."""
    config = make_node_dir(tmp_path, "alpha")
    token = _token(config)
    token.chmod(0o666)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}
    result = subprocess.run(
        [sys.executable, "-m", "node", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert str(token) in result.stderr
    assert f"chmod 600 {token}" in result.stderr


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
async def test_token_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A token file group or others can write is refused before the node binds its port."""
    config = make_node_dir(tmp_path, "alpha")
    _token(config).chmod(mode)
    with pytest.raises(NodeStartError, match=r"admin token file .* is writable by group or others"):
        await _start(config)


async def test_token_in_a_folder_anyone_may_write_is_refused(tmp_path: Path) -> None:
    """A 0600 token (and key) in a world-writable folder without the sticky bit (anyone could replace
    them) is refused; with the sticky bit (as on a Kubernetes secret volume) it is accepted."""
    config = make_node_dir(tmp_path, "alpha")
    folder = _token(config).parent
    folder.chmod(0o777)
    with pytest.raises(NodeStartError, match=re.escape(f"folder {folder}, which is writable by others")):
        await _start(config)
    folder.chmod(0o1777)
    await _start(config)


async def test_token_readable_by_others_starts_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token file others can read starts, with a warning naming the file and the chmod."""
    config = make_node_dir(tmp_path, "alpha")
    token = _token(config)
    token.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="cpnode"):
        await _start(config)
    assert f"chmod 600 {token}" in caplog.text
