"""A supervisor and three nodes as real `cpnode run` processes, pinned to each other with the CLI:
the nodes' own scheduled jobs report, the supervisor totals them; an unregistered node is refused
and keeps its reports; a report contradicting the catalog its node serves is flagged; a node that
stops is flagged; restarted from an older copy of its outbox, its rolled-back sequence numbers are
refused."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.httpsig import Identity, sign_request
from node.config import load_settings
from node.identity import load_identity
from node.supervision.figures import PoolFigures
from tests.supervision.conftest import node_report
from tests.support.cli import cpnode
from tests.support.federation import FED_TOML, offer_toml
from tests.support.nodes import NodeProcess, make_node_dir, start_all
from tests.support.polling import wait_for

# Node processes start from fresh interpreters here, as operators start them (`cpnode run`).
pytestmark = pytest.mark.fresh_processes

SUPERVISION_TOML = """
[supervision]
report_interval_s = 1
stale_intervals = 5
check_interval_s = 1
"""
CHIPS_PER_NODE = (10 + 11) * 8
DEADLINE_S = 60.0


def cli(config: Path, *args: str) -> Any:
    """`cpnode ARGS --config CONFIG --json`, parsed; fails the test on a non-zero exit."""
    done = cpnode(*args, "--config", str(config), "--json")
    assert done.code == 0, done.output
    return done.json()


@pytest.fixture(name="started")
def fixture_started(tmp_path: Path) -> Iterator[dict[str, tuple[Path, NodeProcess]]]:
    """The supervisor `watch` (supervisor role only) and nodes north, east and west (own configs,
    keys and SQLite files), stopped after the test."""
    started: dict[str, tuple[Path, NodeProcess]] = {}
    try:
        config = make_node_dir(tmp_path, "watch", extra_toml=FED_TOML + SUPERVISION_TOML)
        started["watch"] = (config, NodeProcess(config, roles="supervisor"))
        for name in ("north", "east", "west"):
            config = make_node_dir(
                tmp_path, name, region=name, extra_toml=FED_TOML + SUPERVISION_TOML + offer_toml(name)
            )
            started[name] = (config, NodeProcess(config))
        start_all([process for _, process in started.values()])
        yield started
    finally:
        for _, process in started.values():
            process.kill()


def test_supervisor_totals_refuses_and_flags(started: dict[str, tuple[Path, NodeProcess]]) -> None:
    """Totals by region come from the registered nodes only; west (unregistered) is refused and its
    reports wait; a report under north's key contradicting north's catalog is flagged; east stopped
    is flagged; east restarted with its outbox lost is refused as a rollback and records it."""
    keys = {name: cli(config, "keys", "show")["public_key"] for name, (config, _) in started.items()}
    watch_config, watch = started["watch"]
    for name in ("north", "east"):
        cli(
            watch_config,
            "supervision",
            "nodes",
            "add",
            name,
            "--url",
            started[name][1].url,
            "--key",
            keys[name],
        )
    for name in ("north", "east", "west"):
        cli(started[name][0], "supervisors", "add", "watch", "--url", watch.url, "--key", keys["watch"])

    def totals_right() -> bool:
        summary = cli(watch_config, "supervision", "summary")
        rows = {row["region"]: row for row in summary["totals"]["by_region_chip"]}
        checks = {node["node"]: node["check"]["status"] for node in summary["nodes"]}
        return (
            summary["totals"]["reporting_nodes"] == 2
            and set(rows) == {"north", "east"}
            and all(row["capacity_chips"] == CHIPS_PER_NODE for row in rows.values())
            and checks == {"north": "ok", "east": "ok"}
            and summary["flagged"] == []
        )

    wait_for(totals_right, DEADLINE_S, what="both registered nodes totalled and checked")

    def west_refused() -> bool:
        [row] = cli(started["west"][0], "supervisors", "list")["supervisors"]
        return row["pending"] >= 1 and row["sent"] == 0 and "unknown_node" in (row["last_error"] or "")

    wait_for(west_refused, DEADLINE_S, what="west's reports refused and kept")

    # North's key signs a report north's node never made: fewer chips than its own catalog offers.
    north_config = started["north"][0]
    north_key = load_identity(load_settings(north_config, environ={})).signing_key
    lie = PoolFigures("north-pool-a-0", "north", "nvidia", "A100", (), 1, 1, 8, 8, 64, 64, None)
    body = node_report(north_key, seq=1_000_000, pools=[lie])
    url = watch.url + "/fed/v1/supervision/reports"
    headers = sign_request(
        Identity("north", north_key), "POST", url, body, to="watch", now_ts=int(time.time())
    )
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "accepted"

    def north_flagged() -> bool:
        north = {n["node"]: n for n in cli(watch_config, "supervision", "summary")["nodes"]}["north"]
        return "contradicts_catalog" in north["flags"] and "not reported" in " ".join(
            north["check"]["detail"]
        )

    wait_for(north_flagged, DEADLINE_S, what="north's contradicting report flagged")

    east_config, east = started["east"]

    def east_reported(count: int) -> bool:
        history = cli(watch_config, "supervision", "history", "east")["reports"]
        return bool(history) and history[0]["seq"] >= count

    wait_for(lambda: east_reported(3), DEADLINE_S, what="three reports of east accepted")
    east.stop()
    wait_for(
        lambda: (
            {n["node"]: n["flags"] for n in cli(watch_config, "supervision", "summary")["nodes"]}["east"]
            == ["stopped"]
        ),
        DEADLINE_S,
        what="east flagged as stopped",
    )
    with sqlite3.connect(east_config.parent / "data" / "node.db") as db:
        db.execute("DELETE FROM sup_outbox")  # as if restored from a copy made before it reported
    restarted = NodeProcess(east_config)
    started["east"] = (east_config, restarted)
    restarted.start()

    def first_refused() -> bool:
        made = cli(east_config, "supervisors", "reports", "watch", "--limit", "1000")["reports"]
        first = [report for report in made if report["seq"] == 1 and report["state"] != "pending"]
        return (
            bool(first) and first[0]["state"] == "refused" and "sequence_rollback" in first[0]["last_error"]
        )

    wait_for(first_refused, DEADLINE_S, what="east's rolled-back report 1 refused and recorded")
    history = cli(watch_config, "supervision", "history", "east", "--limit", "500")["reports"]
    assert [report["seq"] for report in history] == list(range(len(history), 0, -1))
