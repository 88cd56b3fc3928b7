"""The issue's bad input and faults, each with real node processes: buyer `a` (alice's node) and
seller `b` (a local pool); tasks run on `b` and are followed from `a`.

Unknown framework; no image for the chip; an input failing its hash; a program exiting non-zero;
an instance dying; max_duration_s exceeded; stop twice; a consumer reading another's task."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.tasks.processes import ProcNode, cli_json, make_pair, stop_all

pytestmark = pytest.mark.slow
DATA = b"the real bytes\n"


@pytest.fixture(name="pair", scope="module")
def fixture_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcNode, ProcNode]]:
    """`a` and `b` running for the whole module; `b`'s pool may read inputs from one folder."""
    base = tmp_path_factory.mktemp("faults")
    inputs = base / "inputs"
    inputs.mkdir()
    (inputs / "data.txt").write_bytes(DATA)
    a, b = make_pair(base, seller_pool=f', input_roots = ["{inputs}"]')
    try:
        yield a, b
    finally:
        stop_all(a, b)


def spec(code: str, **extra: Any) -> dict[str, Any]:
    """A task running `python -c CODE` on one CPU slot (the cheapest: `b`'s pool)."""
    return {
        "program": {"command": [sys.executable, "-c", code]},
        "resources": {"units": 1, "hours": 1, "chip_model": "cpu"},
        **extra,
    }


def submit(a: ProcNode, data: dict[str, Any], consumer: str = "alice") -> dict[str, Any]:
    """Submit a task on `a`; the stored task."""
    status, task = a.api("POST", "/api/v1/tasks", {"spec": data, "consumer": consumer})
    assert status == 201, task
    return dict(task)


def balance(a: ProcNode) -> tuple[int, int]:
    """alice's (balance, held) on `a`."""
    _, me = a.api("GET", "/api/v1/consumers/alice")
    return me["balance"], me["held"]


def sale_of(b: ProcNode, trade_id: str) -> dict[str, Any]:
    """`b`'s sale of a trade."""
    _, sales = b.api("GET", "/api/v1/sales")
    return next(s for s in sales["sales"] if s["trade_id"] == trade_id)


def log_text(a: ProcNode, task_id: str) -> str:
    """The task's log as `a` proxies it."""
    status, chunk = a.api("GET", f"/api/v1/tasks/{task_id}/logs?limit=65536")
    assert status == 200, chunk
    return base64.b64decode(chunk["data_b64"]).decode()


def test_an_unknown_framework_is_refused_at_submit(pair: tuple[ProcNode, ProcNode]) -> None:
    """A framework the image catalogue does not know is a 422 naming the field; nothing is stored."""
    a, _b = pair
    bad = spec("pass")
    bad["program"] = {"framework": "nosuchframework>=1", "command": ["x.py"]}
    status, body = a.api("POST", "/api/v1/tasks", {"spec": bad, "consumer": "alice"})
    assert (status, body["error"], body["field"]) == (422, "bad_task_spec", "spec.program.framework")
    assert "nosuchframework" in body["message"]


def test_no_image_for_the_chip_fails_the_task_and_costs_nothing(pair: tuple[ProcNode, ProcNode]) -> None:
    """vllm has no CPU image: every offer is left out with no_framework_image and nothing is held."""
    a, _b = pair
    before = balance(a)
    data = spec("pass")
    data["program"] = {"framework": "vllm>=0.6", "command": ["serve.py"]}
    task = a.released(submit(a, data)["id"])
    assert task["outcome"] == "failed"
    assert task["reason"].startswith("no_framework_image"), task
    assert balance(a) == before


def test_an_input_failing_its_hash_costs_nothing(
    pair: tuple[ProcNode, ProcNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`b` fetches the input, finds another SHA-256 and never starts the program: the task fails
    input_mismatch, the trade is cancelled on both sides, every hold voided."""
    a, b = pair
    before = balance(a)
    inputs = next(p for p in tmp_path_factory.getbasetemp().glob("faults*/inputs"))
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    data = spec(
        "print(open('data.txt').read())",
        inputs=[
            {
                "url": (inputs / "data.txt").as_uri(),
                "path": "data.txt",
                "size_bytes": len(DATA),
                "sha256": wrong,
            }
        ],
    )
    task = a.released(submit(a, data)["id"])
    assert (task["outcome"], task["end_reason"], task["used_s"], task["amount"]) == (
        "failed",
        "input_mismatch",
        0,
        0,
    ), task
    _, order = a.api("GET", f"/api/v1/orders/{task['order_id']}")
    assert order["state"] == "cancelled"
    assert sale_of(b, task["order_id"])["state"] == "voided"
    assert balance(a) == before


def test_a_program_exiting_non_zero_is_charged_for_what_ran(pair: tuple[ProcNode, ProcNode]) -> None:
    """A program that runs 1.2 s and exits 3: the task fails with exit code 3, both ledgers settle 2 s."""
    a, b = pair
    before = balance(a)
    task = a.released(submit(a, spec("import time; time.sleep(1.2); raise SystemExit(3)"))["id"])
    assert (task["outcome"], task["exit_code"], task["used_s"], task["amount"]) == ("failed", 3, 2, 2), task
    sale = sale_of(b, task["order_id"])
    assert (sale["state"], sale["used_s"], sale["settled_amount"]) == ("settled", 2, 2)
    assert balance(a) == (before[0] - 2, before[1])


def test_an_instance_dying_fails_the_task_charged_for_what_ran(pair: tuple[ProcNode, ProcNode]) -> None:
    """The program is killed by a signal nobody sent through the pool: `b`'s pool reports the run
    failed (killed), the task fails, and what ran is charged."""
    a, _b = pair
    code = "import os, sys, time; print('pid', os.getpid(), flush=True); time.sleep(60)"
    task = submit(a, spec(code))
    a.wait(
        task["id"],
        lambda t: t["state"] == "running" and "pid" in log_text(a, t["id"]),
        what="running with its pid logged",
    )
    time.sleep(1.1)
    pid = int(re.search(r"pid (\d+)", log_text(a, task["id"])).group(1))  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    done = a.released(task["id"])
    assert (done["outcome"], done["end_reason"]) == ("failed", "killed"), done
    assert done["used_s"] >= 2
    assert done["amount"] == done["used_s"]


def test_max_duration_exceeded_stops_and_charges_up_to_the_limit(pair: tuple[ProcNode, ProcNode]) -> None:
    """max_duration_s = 2 on a 60 s program: stopped at the limit, charged exactly 2 seconds."""
    a, _b = pair
    done = a.released(submit(a, spec("import time; time.sleep(60)", max_duration_s=2))["id"])
    assert (done["outcome"], done["end_reason"], done["used_s"], done["amount"]) == (
        "stopped",
        "max_duration",
        2,
        2,
    ), done


def test_stop_twice(pair: tuple[ProcNode, ProcNode]) -> None:
    """The consumer stops a running task twice: the second changes nothing; `b` stops the run; the
    task ends stopped and what ran is charged; a stop after release changes nothing either, while
    stopping a task that ran to its end is a 409."""
    a, b = pair
    task = submit(a, spec("import time; time.sleep(60)"))
    a.wait(task["id"], lambda t: t["state"] == "running", what="running")
    first = a.api("POST", f"/api/v1/tasks/{task['id']}/stop", {})
    second = a.api("POST", f"/api/v1/tasks/{task['id']}/stop", {})
    assert (first[0], second[0]) == (200, 200)
    assert second[1]["state"] in ("stopping", "stopped", "released")
    done = a.released(task["id"])
    assert (done["outcome"], done["end_reason"]) == ("stopped", "stopped"), done
    assert sale_of(b, done["order_id"])["state"] == "settled"
    third = a.api("POST", f"/api/v1/tasks/{task['id']}/stop", {})  # once released: still nothing to do
    assert (third[0], third[1]["state"], third[1]["outcome"]) == (200, "released", "stopped"), third
    finished = a.released(submit(a, spec("print('done')"))["id"])
    late = a.api("POST", f"/api/v1/tasks/{finished['id']}/stop", {})
    assert (late[0], late[1]["error"]) == (409, "task_ended"), late


def test_a_consumer_cannot_read_another_consumers_task(pair: tuple[ProcNode, ProcNode]) -> None:
    """bob's token gets alice's task, its log, outputs, events and stop exactly as a missing task: 404."""
    a, _b = pair
    task = a.released(submit(a, spec("print('alice only')"))["id"])
    cli_json(a.config, "consumers", "create", "bob")
    token = cli_json(a.config, "consumers", "token", "bob")["token"]
    for method, tail in (
        ("GET", ""),
        ("GET", "/logs"),
        ("GET", "/outputs"),
        ("GET", "/events"),
        ("POST", "/stop"),
    ):
        body: dict[str, object] | None = {} if method == "POST" else None
        theirs = a.api(method, f"/api/v1/tasks/{task['id']}{tail}", body, token=token)
        missing = a.api(method, f"/api/v1/tasks/a.nosuchtask000{tail}", body, token=token)
        assert theirs[0] == missing[0] == 404, (tail, theirs, missing)
        assert theirs[1]["error"] == missing[1]["error"] == "unknown_task"
    status, listed = a.api("GET", "/api/v1/tasks", token=token)
    assert (status, listed["tasks"]) == (200, [])
