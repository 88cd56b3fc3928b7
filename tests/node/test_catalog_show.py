"""`cpnode catalog show` shows what the running node's `/api/v1/offers` shows: pool offers with free
units net of reservations, not only the config's `[[offers]]`; an unknown partner and a node that is
not running are said plainly."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from node.launcher import NodeProcess
from tests.support.cli import cpnode
from tests.support.nodes import make_node_dir
from tests.support.polling import wait_for
from tests.support.samples import place_args

LOCAL_POOL = """
[scheduler]
enabled = true

[connectors]
heartbeat_interval_s = 0.2
refresh_interval_s = 0.2

[[pools]]
name = "cpu-1"
plugin = "local"
site = "testville"
options = { root = "pools/cpu-1", slots = 2, price_minor_per_slot_hour = 150 }
"""
OFFER_ID = "cpu-1/local/local-1"
DEADLINE_S = 30.0
WIDE = {**os.environ, "COLUMNS": "200"}  # tables 200 columns wide


def api_offers(url: str, config: Path) -> list[dict[str, Any]]:
    """The running node's `GET /api/v1/offers`."""
    token = (config.parent / "keys" / "admin.token").read_text().strip()
    request = urllib.request.Request(f"{url}/api/v1/offers", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read())["offers"])


def test_catalog_show_has_pool_offers_and_reservations(tmp_path: Path) -> None:
    """With a local pool and one unit reserved by an order, `catalog show --json` equals the node's
    offer view (pool offers, one free unit fewer) and the table shows the price in yuan per unit-hour."""
    config = make_node_dir(tmp_path, "alpha", extra_toml=LOCAL_POOL)
    process = NodeProcess(config)
    process.start()
    try:
        wait_for(
            lambda: any(o["id"] == OFFER_ID for o in api_offers(process.url, config)),
            DEADLINE_S,
            "the pool's offers",
        )
        for args in (
            ("consumers", "create", "c1"),
            ("consumers", "deposit", "c1", "--amount", "100000"),
            place_args(OFFER_ID, "--source", "own:connectors", consumer="c1"),
        ):
            done = cpnode(*args, config=config, process=True, env=WIDE)
            assert done.code == 0, done.err
        shown = cpnode("catalog", "show", "--json", config=config, process=True, env=WIDE)
        assert shown.code == 0, shown.err
        rows = json.loads(shown.out)
        by_id = {row["id"]: row for row in rows}
        assert by_id[OFFER_ID]["free_units"] == 1
        assert {row["id"]: row["free_units"] for row in api_offers(process.url, config)} == {
            row["id"]: row["free_units"] for row in rows
        }
        table = cpnode("catalog", "show", config=config, process=True, env=WIDE).out
        assert "1.50 CNY/unit-h" in table
        unknown = cpnode("catalog", "show", "--partner", "nobody", config=config, process=True, env=WIDE)
        assert unknown.code == 1
        assert "unknown_partner" in unknown.err
    finally:
        process.stop()


def test_catalog_show_without_a_running_node_says_so(tmp_path: Path) -> None:
    """Without a running node, `catalog show` exits 1 saying the view comes from the running node."""
    config = make_node_dir(tmp_path, "alpha")
    done = cpnode("catalog", "show", config=config, process=True, env=WIDE)
    assert done.code == 1
    assert "asks the running node" in done.err
    assert "not running" in done.err
