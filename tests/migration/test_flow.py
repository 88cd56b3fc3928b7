"""A migration through real processes, end to end: a program running on one simulated cloud moves
to another across a reserved network path, its state streamed by the data express."""

from __future__ import annotations

from tests.migration.conftest import MIB, STATES_OF_FIGURE_6, World


async def test_migration_across_sites_follows_figure_6(world: World) -> None:
    """The counter program on `bj` moves to `sh`: every state of figure 6 in order, the path reserved
    before any byte moves and released at the end, the destination resumes from the checkpoint, the
    source is released."""
    source = await world.run_source("bj", state_bytes=8 * MIB)
    migration = await world.start(
        {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 800}
    )
    done = await world.api.wait(migration["id"], {"completed", "rolled_back", "needs_attention"}, 90)
    assert done["state"] == "completed", done
    transitions = [h["to"] for h in done["history"] if h["event"] != "note"]
    assert transitions == STATES_OF_FIGURE_6
