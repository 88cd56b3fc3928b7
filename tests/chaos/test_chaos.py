"""Chaos under load: three replicas of a node over one PostgreSQL behind a loopback balancer and a
partner node, with consumers placing, settling and cancelling orders while replicas and the
partner are SIGKILLed and restarted and the database connections are cut. Nothing accepted may be
lost or doubled, both ledgers must balance and reconcile, no hold stays open and nothing logs a
traceback (tests.chaos.checks). The run is bounded: 30 s of load and faults, held open until 20
orders were accepted (a loaded machine places fewer: 97 in 30 s at load 8–13, too few at 20+) but
for at most 150 s, then at most the answer grace and the drain; `python -m bench chaos` runs it
longer and prints the figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.scenario import ChaosSettings, run_chaos
from tests.support.databases import POSTGRES_SKIP_REASON

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.long
@pytest.mark.timeout(600)
async def test_chaos_under_load_loses_nothing(tmp_path: Path) -> None:
    """At least 30 s and 20 accepted orders of six consumers through replica kills, partner kills and
    database cuts: every operation is answered, every accepted one took effect exactly once, and
    everything checks."""
    postgres_url = os.environ.get("CPNODE_TEST_POSTGRES_URL", "")
    if not postgres_url:
        pytest.skip(POSTGRES_SKIP_REASON)
    report = await run_chaos(
        tmp_path,
        postgres_url,
        ChaosSettings(duration_s=30, consumers=6, seed=7, min_placed=20, max_duration_s=150),
    )
    assert report.problems == [], "\n".join(report.problems)
    assert report.lost == 0
    assert report.faults.get("kill_replica", 0) + report.faults.get("kill_partner", 0) >= 3
    assert report.faults.get("cut_database", 0) >= 1
    assert report.load["outcomes"].get("place 201", 0) >= 20, report.load  # the load did run
