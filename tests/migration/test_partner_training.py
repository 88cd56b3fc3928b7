"""The shipped training program moved, mid-run, from `a`'s pool to its partner `b`'s pool (bought as
a task order, the state streamed by the data express straight between the two pools' storage): it
resumes at `b` from its checkpoint and the outputs it keeps there are byte-identical to a run that
never moved. Real node processes, a real express process, real HTTP."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.migration.partners import instance_log, make_partners, resting, submit_running, wait_migration
from tests.support.express import ExpressProcess
from tests.tasks.processes import stop_all
from tests.tasks.test_training import TASKS, plain_run

pytestmark = pytest.mark.slow
# 4 MiB of state; slow enough (30 ms a step) that the move lands well before its end on a loaded machine.
ARGS = ("--steps", "600", "--hidden", "1024", "--features", "512", "--samples", "1024")


@pytest.fixture(name="express")
def fixture_express(tmp_path: Path) -> Iterator[ExpressProcess]:
    """The data express beside `a`'s pool."""
    express = ExpressProcess(tmp_path / "express")
    express.start()
    yield express
    express.stop()


@pytest.mark.long
@pytest.mark.timeout(500)
def test_training_moved_to_a_partners_pool_ends_bit_identical(
    tmp_path: Path, express: ExpressProcess
) -> None:
    """After 50 steps on `a`, the task moves to `b`: it resumes there at the checkpointed step, runs to
    its end, its log reads whole (the steps on `a`, then `b`'s from the resume), and its kept out/model.npy and out/metrics.json have the SHA-256 of an unmigrated run."""
    expected = plain_run(tmp_path / "plain", *ARGS)
    a, b = make_partners(tmp_path / "nodes", express)
    try:
        spec = {
            "program": {
                "command": [sys.executable, str(TASKS / "train_numpy.py"), *ARGS, "--step-delay-ms", "30"],
                "env": {"OPENBLAS_NUM_THREADS": "1", "TRAIN_SEED": "7"},
            },
            "outputs": ["out"],
            "resources": {"units": 1, "hours": 1, "chip_model": "cpu", "objective": "cost"},
        }
        task = submit_running(a, spec)
        deadline = time.monotonic() + 120
        while "step 50 " not in instance_log(a, task["id"]):
            assert time.monotonic() < deadline, instance_log(a, task["id"])[-2000:]
            time.sleep(0.2)
        status, migration = a.api("POST", "/api/v1/migrations", {"task_id": task["id"], "to_node": "b"})
        assert status == 201, migration
        done = wait_migration(a, migration["id"], resting, 240)
        assert (done["state"], done["partner"]) == ("completed", "b"), done
        ended = a.released(task["id"], 240)
        assert ended["outcome"] == "succeeded", ended
        log = instance_log(a, task["id"])  # the part from `a`, then the rest read through `b`
        assert "resumed at step" in log, log[-2000:]
        assert log.index("step 50 ") < log.index("resumed at step"), log[-2000:]
        assert int(log.split("resumed at step ")[1].split()[0]) >= 50
        deadline = time.monotonic() + 60
        while not (kept := a.api("GET", f"/api/v1/tasks/{task['id']}/outputs")[1])["complete"]:
            assert time.monotonic() < deadline, kept
            time.sleep(0.2)
        assert {f["path"].removeprefix("out/"): f["sha256"] for f in kept["files"]} == expected, kept
    finally:
        stop_all(a, b)
