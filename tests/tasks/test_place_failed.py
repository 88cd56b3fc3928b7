"""A task whose placement hangs is not retried without end: `b` (the seller) is frozen, so each
trade request waits for an answer that never comes; every attempt is cut off after
`[tasks] place_timeout_s`, tried again after a back-off, and after `place_attempts` the task fails
`place_failed`, its order cancelled and the consumer's hold released, with real node processes."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

from tests.support.tasks import DEPOSIT
from tests.tasks.processes import make_pair, stop_all

pytestmark = pytest.mark.slow
# Each attempt is cut off long before the trade request's own timeout (5 s) would end it.
BUYER_TASKS = "place_timeout_s = 1\nplace_attempts = 3\n"


def test_a_placement_that_hangs_fails_the_task_after_its_attempts(tmp_path: Path) -> None:
    """Three attempts, each cut off after 1 s (the first two noted with their back-off), then the
    task fails `place_failed`: its order is cancelled and alice holds nothing; the partner's
    return changes nothing."""
    a, b = make_pair(tmp_path, buyer_tasks=BUYER_TASKS)
    try:
        assert b.process.proc is not None
        b.process.proc.send_signal(signal.SIGSTOP)
        spec = {
            "program": {"command": [sys.executable, "-c", "print('never')"]},
            "resources": {"units": 1, "hours": 1, "chip_model": "cpu"},
        }
        status, task = a.api("POST", "/api/v1/tasks", {"spec": spec, "consumer": "alice"})
        assert status == 201, task
        failed = a.wait(
            task["id"],
            lambda t: t["state"] in ("failed", "released"),
            timeout_s=90,
            what="failed",
        )
        assert (failed["reason"] or "").startswith("place_failed: "), failed
        notes = [e["detail"] or "" for e in failed["history"] if e["event"] == "note"]
        attempts = [re.search(r"\(attempt (\d) of 3\); trying again in", n) for n in notes]
        assert [int(m.group(1)) for m in attempts if m] == [1, 2], notes
        assert failed["order_id"] is None  # never ordered: nothing to deliver or settle

        _, orders = a.api("GET", "/api/v1/orders?consumer=alice")
        assert orders["orders"], orders
        for order in orders["orders"]:
            assert order["state"] == "cancelled", order
        _, alice = a.api("GET", "/api/v1/consumers/alice")
        assert (alice["held"], alice["balance"]) == (0, DEPOSIT), alice

        b.process.proc.send_signal(signal.SIGCONT)
        assert a.task(task["id"])["reason"] == failed["reason"]
        _, alice = a.api("GET", "/api/v1/consumers/alice")
        assert (alice["held"], alice["balance"]) == (0, DEPOSIT), alice
    finally:
        if b.process.proc is not None and b.process.running:
            b.process.proc.send_signal(signal.SIGCONT)
        stop_all(a, b)
