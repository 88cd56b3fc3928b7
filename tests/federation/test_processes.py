"""Three real `cpnode run` processes federate over loopback: the operator pins partners with the
CLI, the nodes' own sync jobs log in and exchange catalogs, and each node's merged offer view shows
exactly what its agreements allow (the untrusted pair sees nothing of each other)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import cpnode
from tests.support.federation import FED_TOML, offer_toml
from tests.support.nodes import NodeProcess, make_node_dir, start_all
from tests.support.polling import wait_for

# Node processes start from fresh interpreters here, as operators start them (`cpnode run`).
pytestmark = pytest.mark.fresh_processes

FAST_SYNC = FED_TOML.replace("sync_interval_s = 3600", "sync_interval_s = 1")
DEADLINE_S = 30.0


def offers(url: str, config: Path) -> list[dict[str, Any]]:
    """GET /api/v1/offers with the node's admin token."""
    token = (config.parent / "keys" / "admin.token").read_text().strip()
    request = urllib.request.Request(url + "/api/v1/offers", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return list(json.loads(response.read())["offers"])


@pytest.fixture(name="three")
def fixture_three(tmp_path: Path) -> Iterator[dict[str, tuple[Path, NodeProcess]]]:
    """Three node processes (own keys, configs, SQLite files), started and stopped around the test."""
    started: dict[str, tuple[Path, NodeProcess]] = {}
    try:
        for name in ("north", "east", "south"):
            config = make_node_dir(
                tmp_path, name, extra_toml=FAST_SYNC + offer_toml(name, pool=f"{name}-pool")
            )
            started[name] = (config, NodeProcess(config))
        start_all([process for _, process in started.values()])
        yield started
    finally:
        for _, process in started.values():
            process.kill()


def test_three_processes_federate(three: dict[str, tuple[Path, NodeProcess]]) -> None:
    """Pairwise trust except north–south: each node sees its partners' offers, at agreed prices, and the
    untrusted pair sees nothing of each other."""
    keys = {
        name: cpnode("keys", "show", "--config", str(config), "--json").json()["public_key"]
        for name, (config, _) in three.items()
    }

    def pin(a: str, b: str, *extra: str) -> None:
        config = str(three[a][0])
        cpnode(
            "partners",
            "add",
            b,
            "--url",
            three[b][1].url,
            "--key",
            keys[b],
            "--config",
            config,
            *extra,
            "--json",
        ).json()

    pin("north", "east")
    pin("east", "north", "--markup-bp", "1000")
    pin("east", "south")
    pin("south", "east", "--pools", "nothing-matches")
    wanted = {
        "north": {"own:config", "partner:east"},
        "east": {"own:config", "partner:north"},
        "south": {"own:config", "partner:east"},
    }

    def current() -> dict[str, list[dict[str, Any]]]:
        return {name: offers(process.url, config) for name, (config, process) in three.items()}

    def sources_seen() -> bool:
        return {name: {row["source"] for row in rows} for name, rows in current().items()} == wanted

    wait_for(sources_seen, DEADLINE_S, "each node seeing the offers its partners show it", interval_s=0.2)
    views = current()
    east_to_north = [row for row in views["north"] if row["source"] == "partner:east"]
    east_own = {row["id"]: row for row in views["east"] if row["source"] == "own:config"}
    assert len(east_to_north) == 2
    for row in east_to_north:
        assert row["price_per_unit_hour"] == (east_own[row["id"]]["price_per_unit_hour"] * 11 + 5) // 10
        assert row["age_s"] >= 0
    assert not any(row["partner"] == "south" for row in views["north"])
    assert not any(row["partner"] == "north" for row in views["south"])
    # The CLI sees what the node stored, and the link states.
    listing = {
        row["name"]: row
        for row in cpnode("partners", "list", "--config", str(three["east"][0]), "--json").json()
    }
    assert listing["north"]["status"] == "ok"
    assert listing["south"]["offers"] == 0  # south lets east see none of its pools
    shown = cpnode(
        "catalog", "show", "--partner", "east", "--config", str(three["north"][0]), "--json"
    ).json()
    assert {row["id"] for row in shown} == {row["id"] for row in east_to_north}
    for _, process in three.values():
        assert process.stop() == 0
