"""Tasks delivered on the node's own `local` pool through the API: ordered, provisioned, run,
metered, settled, outputs kept, instance deleted, released."""

from __future__ import annotations

from pathlib import Path

from tests.support.tasks import pool_node, python_task

WRITE = "import pathlib; pathlib.Path('out').mkdir(); pathlib.Path('out/r.txt').write_text('hello'); print('done')"


async def test_a_task_runs_on_the_local_pool_and_its_output_is_kept(tmp_path: Path) -> None:
    """A submitted task goes through every state to released; its log and output stay readable."""
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task(WRITE, outputs=["out"]))
        assert task["state"] == "submitted"
        done = await node.wait(task["id"])
        states = [e["state"] for e in done["history"]]
        assert states == [
            "submitted",
            "ordered",
            "provisioning",
            "deploying",
            "running",
            "succeeded",
            "released",
        ], done
        status, listed = await node.call("GET", f"/api/v1/tasks/{task['id']}/outputs")
        assert status == 200
        assert listed["complete"] is True
        assert [f["path"] for f in listed["files"]] == ["out/r.txt"]
        async with node.http.get(f"/api/v1/tasks/{task['id']}/outputs/out/r.txt") as response:
            assert await response.read() == b"hello"
        status, chunk = await node.call("GET", f"/api/v1/tasks/{task['id']}/logs")
        assert status == 200
        assert chunk["complete"] is True


async def test_a_failing_program_fails_its_task_and_the_order_is_settled(tmp_path: Path) -> None:
    """A program exiting 3 fails its task with the exit code; its order is settled for what ran."""
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task("import sys; sys.exit(3)"))
        done = await node.wait(task["id"])
        assert done["history"][-2]["state"] == "failed"
        assert done["exit_code"] == 3
        assert done["reason"].startswith("exit_nonzero")
        _status, order = await node.call("GET", f"/api/v1/orders/{done['order_id']}")
        assert order["state"] == "settled", order


async def test_more_tasks_than_slots_wait_and_all_run(tmp_path: Path) -> None:
    """Six one-slot tasks on two slots: they queue for capacity, and every one runs to the end."""
    async with pool_node(tmp_path, slots=2) as node:
        ids = [(await node.submit(python_task("import time; time.sleep(0.3)")))["id"] for _ in range(6)]
        for task_id in ids:
            done = await node.wait(task_id, timeout_s=60)
            assert done["history"][-2]["state"] == "succeeded", done


async def test_stop_a_running_task_twice(tmp_path: Path) -> None:
    """Stopping a running task stops it; stopping it again changes nothing; it ends stopped."""
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task("import time; time.sleep(60)"))
        await node.wait(task["id"], ("running",))
        first = await node.call("POST", f"/api/v1/tasks/{task['id']}/stop", {})
        second = await node.call("POST", f"/api/v1/tasks/{task['id']}/stop", {})
        assert first[0] == 200
        assert second[0] == 200
        assert second[1]["state"] in ("stopping", "stopped", "released")
        done = await node.wait(task["id"])
        assert done["history"][-2]["state"] == "stopped"
        assert done["end_reason"] == "stopped"


async def test_a_bad_spec_is_refused_naming_its_field(tmp_path: Path) -> None:
    """A spec with two units is a 422 naming spec.resources.units, and stores nothing."""
    async with pool_node(tmp_path) as node:
        spec = python_task("pass")
        spec["resources"]["units"] = 2
        status, body = await node.call("POST", "/api/v1/tasks", {"spec": spec, "consumer": "alice"})
        assert status == 422, body
        assert body["field"] == "spec.resources.units"
        assert (await node.call("GET", "/api/v1/tasks"))[1]["tasks"] == []


async def test_a_task_on_each_backend(tmp_path: Path, db_url: str) -> None:
    """The same task on SQLite and on PostgreSQL: run, metered, settled, released."""
    async with pool_node(tmp_path, db_url=None if db_url.startswith("sqlite") else db_url) as node:
        task = await node.submit(python_task(WRITE, outputs=["out"]))
        done = await node.wait(task["id"])
        assert done["outcome"] == "succeeded", done
        assert done["used_s"] >= 1
        _, order = await node.call("GET", f"/api/v1/orders/{done['order_id']}")
        assert (order["state"], order["settled_amount"]) == ("settled", done["amount"])


async def test_a_framework_task_runs_on_the_pools_mapped_runtime(tmp_path: Path) -> None:
    """`pytorch>=2.4` resolves to the CPU image for the local pool's chip; the pool runs it with the
    runtime it maps pytorch to (this interpreter), the command being the image's arguments."""
    async with pool_node(tmp_path) as node:
        spec = python_task("unused")
        spec["program"] = {
            "framework": "pytorch>=2.4",
            "command": ["-c", "import sys; print(sys.version_info[0])"],
        }
        done = await node.wait((await node.submit(spec))["id"])
        assert done["outcome"] == "succeeded", done
        assert "pytorch" in (done["image"] or "")
        status, chunk = await node.call("GET", f"/api/v1/tasks/{done['id']}/logs")
        assert status == 200
        import base64

        assert base64.b64decode(chunk["data_b64"]) == b"3\n"
