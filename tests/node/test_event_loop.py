"""`cpnode run`'s event loop (`http.event_loop`): uvloop by default, the standard one on request, a
clear error when uvloop is asked for and missing, and a bad value refused with the config."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from node.cli.common import CliError
from node.cli.run_cmd import loop_name, run_on_loop
from node.config import ConfigError, load_settings
from tests.support.nodes import make_node_dir


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_runs_on_the_loop_named(event_loop: str) -> None:
    seen: list[str] = []

    async def main() -> None:
        seen.append(loop_name(asyncio.get_running_loop()))

    run_on_loop(main(), event_loop)
    assert seen == [event_loop]


def test_uvloop_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    ran: list[bool] = []

    async def main() -> None:
        ran.append(True)

    with pytest.raises(CliError, match=r'uvloop is not installed.*http\.event_loop = "asyncio"'):
        run_on_loop(main(), "uvloop")
    assert ran == []


def test_default_and_override(tmp_path: Path) -> None:
    config = make_node_dir(tmp_path, "alpha")
    assert load_settings(config, environ={}).http.event_loop == "uvloop"
    overridden = load_settings(config, environ={"CPNODE_HTTP_EVENT_LOOP": "asyncio"})
    assert overridden.http.event_loop == "asyncio"
    with pytest.raises(ConfigError, match="event_loop"):
        load_settings(config, environ={"CPNODE_HTTP_EVENT_LOOP": "trio"})
