"""Config reload of a running `cpnode run` process: SIGHUP and `cpnode reload` apply the reloadable
keys at once, name the changed keys that need a restart, and `cpnode status` says when the file
differs from what the running node loaded."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.launcher import NodeProcess
from tests.support.cli import cpnode
from tests.support.nodes import make_node_dir, offer_entry
from tests.support.polling import wait_for

DEADLINE_S = 20.0


def offer_toml(price: int) -> str:
    """One `[[offers]]` entry at `price` minor units per unit-hour."""
    return offer_entry("gpu-a100", "Testville", 4, price)


def offers(url: str, config: Path) -> list[dict[str, Any]]:
    """The running node's `GET /api/v1/offers`."""
    token = (config.parent / "keys" / "admin.token").read_text().strip()
    request = urllib.request.Request(f"{url}/api/v1/offers", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read())["offers"])


@pytest.fixture(name="node")
def fixture_node(tmp_path: Path) -> Iterator[tuple[NodeProcess, Path]]:
    """A node with one configured offer at 100 minor units, run as `cpnode run`."""
    config = make_node_dir(tmp_path, "alpha", extra_toml="[scheduler]\nenabled = false\n" + offer_toml(100))
    process = NodeProcess(config)
    process.start()
    try:
        yield process, config
    finally:
        process.stop()


def rewrite(config: Path, old: str, new: str) -> None:
    """Replace `old` by `new` in the config file."""
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_reload_applies_offers_and_names_keys_that_need_a_restart(node: tuple[NodeProcess, Path]) -> None:
    """`cpnode reload` serves the changed offers at once, lists a changed port-level setting as needing
    a restart, and `cpnode status` reports the file changed before the reload and only the pending
    restart after it."""
    process, config = node
    assert [o["price_per_unit_hour"] for o in offers(process.url, config)] == [100]
    status = json.loads(cpnode("status", "--json", config=config, process=True).out)
    assert "config" not in status

    rewrite(config, "price_per_unit_hour = 100", "price_per_unit_hour = 250")
    rewrite(config, "[scheduler]", '[logging]\nlevel = "debug"\n\n[scheduler]')
    rewrite(config, "[http]\n", "[http]\nshutdown_grace_s = 5\n")
    status = json.loads(cpnode("status", "--json", config=config, process=True).out)
    assert "the config file changed since the running node loaded it" in status["config"]

    done = cpnode("reload", "--json", config=config, process=True)
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["applied"] == ["logging.level", "offers"]
    assert result["restart_needed"] == ["http.shutdown_grace_s"]
    assert [o["price_per_unit_hour"] for o in offers(process.url, config)] == [250]

    status = json.loads(cpnode("status", "--json", config=config, process=True).out)
    assert status["config"] == "changed keys that need a restart: http.shutdown_grace_s"


def test_sighup_applies_the_file_and_a_bad_file_changes_nothing(node: tuple[NodeProcess, Path]) -> None:
    """SIGHUP applies changed offers; a file that does not validate is refused by `cpnode reload`
    (exit 2, the problem named) and by SIGHUP, and the node keeps serving what it had."""
    process, config = node
    assert process.proc is not None
    rewrite(config, "price_per_unit_hour = 100", "price_per_unit_hour = 300")
    process.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: [o["price_per_unit_hour"] for o in offers(process.url, config)] == [300], DEADLINE_S)

    rewrite(config, "price_per_unit_hour = 300", "price_per_unit_hour = -5")
    done = cpnode("reload", config=config, process=True)
    assert done.code == 2
    assert "offers.0.price_per_unit_hour" in done.err
    process.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config not reloaded, nothing changed" in process.log(), DEADLINE_S)
    assert [o["price_per_unit_hour"] for o in offers(process.url, config)] == [300]
    assert process.running


def test_changed_keys_and_what_a_reload_takes(tmp_path: Path) -> None:
    """`changed_keys` names changed table keys as `section.key` and list sections by name; the
    merged settings take only the reloadable ones from the new file."""
    from node.config import load_settings
    from node.reload import changed_keys, is_reloadable, merged_settings

    config = make_node_dir(tmp_path, "alpha", extra_toml=offer_toml(100))
    old = load_settings(config, environ={})
    rewrite(config, "price_per_unit_hour = 100", "price_per_unit_hour = 200")
    rewrite(config, "[http]\n", "[http]\nshutdown_grace_s = 3\n")
    config.write_text(config.read_text() + '\n[logging]\nlevel = "warning"\n')
    new = load_settings(config, environ={})
    changed = changed_keys(old, new)
    assert changed == ["http.shutdown_grace_s", "logging.level", "offers"]
    assert [key for key in changed if is_reloadable(key)] == ["logging.level", "offers"]
    assert is_reloadable("logging.access")
    merged = merged_settings(old, new)
    assert merged.offers == new.offers
    assert merged.logging.level == "warning"
    assert merged.http == old.http
    assert changed_keys(merged, new) == ["http.shutdown_grace_s"]


def test_access_lines_turned_off_and_on_by_a_reload(node: tuple[NodeProcess, Path]) -> None:
    """`logging.access = false` stops the line per request from the next request on, and a reload
    back to true brings it back; the other log lines go on either way."""
    process, config = node

    def access_lines(path: str, method: str = "GET") -> int:
        return sum(f" cpnode.access {method} {path} " in line for line in process.log().splitlines())

    offers(process.url, config)
    wait_for(lambda: access_lines("/api/v1/offers") == 1, DEADLINE_S)
    rewrite(config, "[scheduler]", "[logging]\naccess = false\n\n[scheduler]")
    done = cpnode("reload", "--json", config=config, process=True)
    assert json.loads(done.out)["applied"] == ["logging.access"]
    for _ in range(3):
        offers(process.url, config)
    rewrite(config, "access = false", "access = true")
    assert json.loads(cpnode("reload", "--json", config=config, process=True).out)["applied"] == [
        "logging.access"
    ]
    offers(process.url, config)
    wait_for(lambda: access_lines("/api/v1/offers") == 2, DEADLINE_S)
    # The first reload's own request ended with the lines off, the second's with them on again.
    assert access_lines("/api/v1/reload", "POST") == 1
    assert "config reloaded from" in process.log()
