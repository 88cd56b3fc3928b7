"""`cpnode migrations` against a running node: plan, start with a followed progress, list, show,
cancel; refusals exit non-zero with the node's reason."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from tests.support.migration import MIB, World


async def cpnode(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `cpnode ARGS --config <the node's config>` as a process (tables 200 columns wide)."""
    argv = [sys.executable, "-m", "node", *args, "--config", str(world.node.config)]
    env = {**os.environ, "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=120, check=False, env=env
    )


async def test_plan_start_follow_list_show_and_refusals(world: World) -> None:
    """The plan ranks destinations; `start --follow` prints each state and the transfer's progress and
    exits 0 once completed; list and show agree; cancelling a completed migration exits 1 saying why;
    bad usage exits 2."""
    source = await world.run_source("bj", state_bytes=8 * MIB)
    plan = await cpnode(
        world, "migrations", "plan", "--from", "bj", "--instance", source.id, "--to", "sh", "--json"
    )
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["chosen"]["offer_id"] == "sh/cn-east-2/gpu-a100-8"
    table = await cpnode(world, "migrations", "plan", "--from", "bj", "--instance", source.id)
    assert table.returncode == 0, table.stderr
    assert "bj/cn-east-2/gpu-a100-8" in table.stdout
    assert "same_place" in table.stdout

    started = await cpnode(
        world, "migrations", "start", "--from", "bj", "--instance", source.id, "--to", "sh",
        "--bandwidth-mbps", "200", "--id", "cli-move", "--follow",
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    for state in ("path_provisioning", "transferring", "verifying", "cutover", "completed"):
        assert f"cli-move: {state}" in started.stdout, started.stdout
    assert "downtime" in started.stdout

    listed = await cpnode(world, "migrations", "list", "--json")
    assert [m["id"] for m in json.loads(listed.stdout)] == ["cli-move"]
    shown = await cpnode(world, "migrations", "show", "cli-move", "--json")
    assert json.loads(shown.stdout)["state"] == "completed"
    human = await cpnode(world, "migrations", "show", "cli-move")
    assert "beijing → shanghai" in human.stdout

    cancelled = await cpnode(world, "migrations", "cancel", "cli-move")
    assert cancelled.returncode == 1
    assert "invalid_migration_state" in cancelled.stderr
    unknown = await cpnode(world, "migrations", "follow", "nothing")
    assert unknown.returncode == 1
    assert "unknown_migration" in unknown.stderr
    both = await cpnode(
        world, "migrations", "plan", "--from", "bj", "--instance", source.id, "--to", "sh", "--offer", "x"
    )
    assert both.returncode == 2
