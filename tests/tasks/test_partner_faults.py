"""Partner faults with real node processes: `b` (the seller, whose pool runs the task) stops
answering during delivery or while the task runs, and either node restarts mid-run. The task's
status says so, the task is never lost, settlement waits, and both ledgers settle in the end."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tasks.processes import ProcNode, make_pair, stop_all

pytestmark = pytest.mark.slow


@pytest.fixture(name="pair")
def fixture_pair(tmp_path: Path) -> Iterator[tuple[ProcNode, ProcNode]]:
    """`a` and `b` running for one test (each test disturbs them)."""
    a, b = make_pair(tmp_path, buyer_tasks="partner_timeout_s = 1\n")
    try:
        yield a, b
    finally:
        for node in (a, b):
            if node.process.proc is not None and node.process.running:
                node.process.proc.send_signal(signal.SIGCONT)
        stop_all(a, b)


def submit(a: ProcNode, seconds: float) -> dict[str, Any]:
    """A task on `b`'s pool that prints, sleeps `seconds` and prints again."""
    code = f"import time; print('start', flush=True); time.sleep({seconds}); print('end')"
    data = {
        "program": {"command": [sys.executable, "-c", code]},
        "resources": {"units": 1, "hours": 1, "chip_model": "cpu"},
    }
    status, task = a.api("POST", "/api/v1/tasks", {"spec": data, "consumer": "alice"})
    assert status == 201, task
    return dict(task)


def settled_both(a: ProcNode, b: ProcNode, task: dict[str, Any]) -> None:
    """Both ledgers settled the trade for the task's metered amount."""
    _, order = a.api("GET", f"/api/v1/orders/{task['order_id']}")
    _, sales = b.api("GET", "/api/v1/sales")
    sale = next(s for s in sales["sales"] if s["trade_id"] == task["order_id"])
    assert (order["state"], order["settled_amount"]) == ("settled", task["amount"]), order
    assert (sale["state"], sale["settled_amount"]) == ("settled", task["amount"]), sale


def test_partner_down_while_the_task_runs(pair: tuple[ProcNode, ProcNode]) -> None:
    """`b` freezes (SIGSTOP) while its pool runs the task: `a` shows `partner_unreachable` and
    keeps the task running; once `b` answers again the task ends, and both ledgers settle."""
    a, b = pair
    task = submit(a, 4)
    a.wait(task["id"], lambda t: t["state"] == "running", what="running")
    assert b.process.proc is not None
    b.process.proc.send_signal(signal.SIGSTOP)
    try:
        seen = a.wait(
            task["id"],
            lambda t: (t.get("detail") or "").startswith("partner_unreachable"),
            what="unreachable",
        )
        assert seen["state"] == "running"
    finally:
        b.process.proc.send_signal(signal.SIGCONT)
    done = a.released(task["id"])
    assert done["outcome"] == "succeeded", done
    assert done["used_s"] >= 4
    settled_both(a, b, done)


def test_partner_down_during_delivery(pair: tuple[ProcNode, ProcNode]) -> None:
    """`b` is frozen when the task is submitted: the task waits in `submitted` saying why (its
    orders to `b` are abandoned, the consumer's money released); once `b` answers it runs and settles."""
    a, b = pair
    assert b.process.proc is not None
    b.process.proc.send_signal(signal.SIGSTOP)
    try:
        task = submit(a, 1)
        waiting = a.wait(
            task["id"],
            lambda t: (t.get("detail") or "").startswith("waiting_for_capacity"),
            timeout_s=60,
            what="waiting",
        )
        assert waiting["state"] == "submitted"
    finally:
        b.process.proc.send_signal(signal.SIGCONT)
    done = a.released(task["id"], timeout_s=90)
    assert done["outcome"] == "succeeded", done
    settled_both(a, b, done)
    _, me = a.api("GET", "/api/v1/consumers/alice")
    assert me["held"] == 0


def test_the_buyer_restarts_while_the_task_runs(pair: tuple[ProcNode, ProcNode]) -> None:
    """`a` stops and starts again mid-run: it resumes following the task, which ends and settles."""
    a, b = pair
    task = submit(a, 4)
    a.wait(task["id"], lambda t: t["state"] == "running", what="running")
    assert a.process.stop() == 0
    a.start()
    done = a.released(task["id"])
    assert done["outcome"] == "succeeded", done
    settled_both(a, b, done)


def test_the_seller_crashes_while_the_task_runs(pair: tuple[ProcNode, ProcNode]) -> None:
    """`b` is killed mid-run (its pool's program dies with it) and started again: it finds the run
    lost, fails the task and meters it up to when it last saw it running; `a` settles that."""
    a, b = pair
    task = submit(a, 60)
    running = a.wait(
        task["id"],
        lambda t: (
            t["state"] == "running"
            and (t.get("seen_running_ms") or 0) - (t.get("observed_started_ms") or 0) >= 2000
        ),
        what="running 2 s",
    )
    killed_ms = time.time_ns() // 1_000_000
    b.process.kill()
    a.wait(
        task["id"], lambda t: (t.get("detail") or "").startswith("partner_unreachable"), what="unreachable"
    )
    b.start()
    done = a.released(task["id"])
    assert (done["outcome"], done["end_reason"]) == ("failed", "lost"), done
    # Metered up to the crash, not through the downtime or to the program's end: the bound is the
    # time from the pool's own start (as `b` reported it) to the kill, in started seconds. `a`'s own
    # sight of the start is no bound: a loaded machine lets `a` see the run seconds after it began.
    # `b` answers "running" from its record after the restart until it finds the run lost, so `a`
    # sees it running longer than it ran: `a` pays what `b` metered, not its own longer sight.
    assert done["started_ms"] is not None, done
    assert done["started_ms"] <= running["observed_started_ms"], (done, running)
    ran_s = (killed_ms - done["started_ms"]) / 1000
    assert 1 <= done["used_s"] <= ran_s + 1, (done["used_s"], ran_s)
    _, sold = b.api("GET", "/api/v1/tasks")
    [theirs] = [t for t in sold["tasks"] if t["order_id"] == done["order_id"]]
    assert (theirs["used_s"], theirs["amount"]) == (done["used_s"], done["amount"]), (theirs, done)
    settled_both(a, b, done)
